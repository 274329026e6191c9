"""The local stack: the production topology on emulators, with the pieces Google Cloud
provides in production (push delivery, Eventarc, Cloud Scheduler) played by small bridges."""
