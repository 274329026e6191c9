"""Local-only tools, never deployed: the emulators, the Auth emulator, the local stack, the
Alpaca simulator, the Vertex AI stand-in and the servers they run in, the CloudEvent encoders
the Eventarc bridges use, and applying the topology to an emulator."""
