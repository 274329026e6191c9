// End to end with the official Firebase JS SDK, as a web client uses the backend.
//
// Driven by tests/integration/test_callables_js.py, which starts the Firestore and Auth
// emulators, the callables server and the Vertex AI stand-in, and passes their addresses:
//   AGENTTRADER_PROJECT, AGENTTRADER_REGION, AGENTTRADER_CALLABLES_HOST (host:port),
//   FIREBASE_AUTH_EMULATOR_HOST, FIRESTORE_EMULATOR_HOST (host:port),
//   AGENTTRADER_RULES_LOADED ("1" when firestore.rules is enforced by the emulator),
//   AGENTTRADER_ALPACA_KEY_ID / _SECRET_KEY / _BASE_URL (a tenant of the Alpaca simulator),
//   AGENTTRADER_OAUTH_CLIENT_ID / _REDIRECT_URI / _TENANT (the simulator's OAuth app, and the
//   simulated account that approves it).
// Run alone against a running local stack: node --test tests/js/
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';

import { deleteApp, initializeApp } from 'firebase/app';
import { connectAuthEmulator, createUserWithEmailAndPassword, getAuth } from 'firebase/auth';
import {
  collection,
  connectFirestoreEmulator,
  doc,
  getDoc,
  getDocs,
  getFirestore,
  onSnapshot,
  setDoc,
  terminate,
  updateDoc,
} from 'firebase/firestore';
import { connectFunctionsEmulator, getFunctions, httpsCallable } from 'firebase/functions';

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set (run through test_callables_js.py)`);
  return value;
};
const PROJECT = env('AGENTTRADER_PROJECT');
const REGION = process.env.AGENTTRADER_REGION || 'us-central1';
const RULES_LOADED = process.env.AGENTTRADER_RULES_LOADED === '1';
const SNAPSHOT_TIMEOUT_MS = 20_000;

const hostPort = (value) => {
  const [host, port] = value.split(':');
  return { host, port: Number(port) };
};

/** One signed-in client: its own app, so two users never share an auth state. */
async function client(name) {
  const app = initializeApp({ projectId: PROJECT, apiKey: 'fake-api-key' }, name);
  const auth = getAuth(app);
  connectAuthEmulator(auth, `http://${env('FIREBASE_AUTH_EMULATOR_HOST')}`, {
    disableWarnings: true,
  });
  const db = getFirestore(app);
  const firestore = hostPort(env('FIRESTORE_EMULATOR_HOST'));
  connectFirestoreEmulator(db, firestore.host, firestore.port);
  const functions = getFunctions(app, REGION);
  const callables = hostPort(env('AGENTTRADER_CALLABLES_HOST'));
  connectFunctionsEmulator(functions, callables.host, callables.port);
  const email = `${name}-${Date.now()}@example.com`;
  const { user } = await createUserWithEmailAndPassword(auth, email, 'correct-horse-42');
  const call = (fn, data) => httpsCallable(functions, fn)(data).then((r) => r.data);
  return { app, db, user, email, call };
}

/** Resolves with the snapshot once a sync (not onboarding's placeholder) has written it. */
function syncedSnapshot(db, uid) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      unsubscribe();
      reject(new Error(`no synced snapshot for ${uid} within ${SNAPSHOT_TIMEOUT_MS} ms`));
    }, SNAPSHOT_TIMEOUT_MS);
    const unsubscribe = onSnapshot(
      doc(db, `users/${uid}/data/snapshot`),
      (snap) => {
        const data = snap.data();
        if (data && data.placeholder !== true && data.syncedAt) {
          clearTimeout(timer);
          unsubscribe();
          resolve(data);
        }
      },
      (error) => {
        clearTimeout(timer);
        reject(error);
      },
    );
  });
}

async function rejectsWith(promise, code) {
  await assert.rejects(promise, (error) => {
    assert.equal(error.code, code, `expected ${code}, got ${error.code}: ${error.message}`);
    return true;
  });
}

describe('callables through the Firebase JS SDK', () => {
  let alice;
  let bob;
  let signal;

  before(async () => {
    alice = await client('alice');
    bob = await client('bob');
  });

  after(async () => {
    for (const c of [alice, bob].filter(Boolean)) {
      await terminate(c.db);
      await deleteApp(c.app);
    }
  });

  it('onboard_user creates the account once', async () => {
    const first = await alice.call('onboard_user');
    assert.equal(first.status, 'success');
    assert.equal(first.userId, alice.user.uid);
    assert.ok(Array.isArray(first.next_steps) && first.next_steps.length > 0);
    const again = await alice.call('onboard_user');
    assert.equal(again.status, 'already_onboarded');

    const root = await getDoc(doc(alice.db, `users/${alice.user.uid}`));
    assert.equal(root.data().onboarded, true);
    assert.equal(root.data().email, alice.email);
    const config = await getDoc(doc(alice.db, `users/${alice.user.uid}/config/alpaca`));
    assert.equal(config.data().configured, false);
  });

  it('generate_trading_signal needs a synced snapshot', async () => {
    await rejectsWith(alice.call('generate_trading_signal', {}), 'functions/failed-precondition');
  });

  it('writes keys with the Firestore SDK and sees the first sync from the sealed form', async () => {
    const uid = alice.user.uid;
    // Keys of a tenant of the local Alpaca simulator (the driver created it): the real
    // pipeline validates them, marks them configured and syncs at once.
    await setDoc(doc(alice.db, `users/${uid}/secrets/alpaca`), {
      key_id: env('AGENTTRADER_ALPACA_KEY_ID'),
      secret_key: env('AGENTTRADER_ALPACA_SECRET_KEY'),
      base_url: env('AGENTTRADER_ALPACA_BASE_URL'),
    });
    if (RULES_LOADED) {
      // Write-only: not even the owner reads keys back.
      await rejectsWith(getDoc(doc(alice.db, `users/${uid}/secrets/alpaca`)), 'permission-denied');
    }
    const snapshot = await syncedSnapshot(alice.db, uid);
    assert.equal(typeof snapshot.equity, 'string');
    const config = await getDoc(doc(alice.db, `users/${uid}/config/alpaca`));
    assert.equal(config.data().configured, true);
    assert.equal(config.data().keysState, 'proven');
  });

  it('enables trading', async () => {
    const ref = doc(alice.db, `users/${alice.user.uid}/status/trading`);
    await updateDoc(ref, { enabled: true });
    assert.equal((await getDoc(ref)).data().enabled, true);
  });

  it('generate_trading_signal answers and the signal can be read back', async () => {
    const result = await alice.call('generate_trading_signal', {
      marketConditions: { vix: 19.5, note: 'quiet session' },
    });
    assert.equal(result.snapshotPath, `users/${alice.user.uid}/data/snapshot`);
    const response = JSON.parse(result.response);
    assert.ok(['BUY', 'SELL', 'HOLD'].includes(response.action));
    assert.ok(response.confidence >= 0 && response.confidence <= 1);

    const stored = await getDoc(doc(alice.db, `users/${alice.user.uid}/trading_signals/${result.id}`));
    assert.ok(stored.exists());
    assert.equal(stored.data().userId, alice.user.uid);
    assert.equal(stored.data().response, result.response);
    assert.ok(stored.data().vertex.model);
    signal = result.id;
  });

  it('validates input with INVALID_ARGUMENT', async () => {
    await rejectsWith(
      alice.call('generate_trading_signal', { marketConditions: 'x'.repeat(2001) }),
      'functions/invalid-argument',
    );
  });

  it('a second user can read none of the first user\'s documents', { skip: !RULES_LOADED && 'firestore.rules not loaded' }, async () => {
    const uid = alice.user.uid;
    for (const path of [
      `users/${uid}`,
      `users/${uid}/config/alpaca`,
      `users/${uid}/status/trading`,
      `users/${uid}/data/snapshot`,
      `users/${uid}/trading_signals/${signal}`,
      `users/${uid}/secrets/alpaca`,
    ]) {
      await rejectsWith(getDoc(doc(bob.db, path)), 'permission-denied');
    }
    await rejectsWith(getDocs(collection(bob.db, `users/${uid}/trading_signals`)), 'permission-denied');
    await rejectsWith(getDocs(collection(bob.db, `users/${uid}/audit`)), 'permission-denied');
    await rejectsWith(
      setDoc(doc(bob.db, `users/${uid}/secrets/alpaca`), {
        key_id: 'PKBOB000000000000001',
        secret_key: 'bob',
        base_url: 'https://paper-api.alpaca.markets',
      }),
      'permission-denied',
    );
  });

  it('migrate_legacy_data without the admin claim is permission-denied', async () => {
    await rejectsWith(
      bob.call('migrate_legacy_data', { targetUserId: alice.user.uid }),
      'functions/permission-denied',
    );
  });

  it('connects an Alpaca account through OAuth, syncs it, and disconnects it', async () => {
    await bob.call('onboard_user');
    const uid = bob.user.uid;
    const redirectUri = env('AGENTTRADER_OAUTH_REDIRECT_URI');
    // The browser at Alpaca's authorize page, approving the app: redirected back with a code.
    const authorize = new URL('/oauth/authorize', env('AGENTTRADER_ALPACA_BASE_URL'));
    authorize.search = new URLSearchParams({
      response_type: 'code',
      client_id: env('AGENTTRADER_OAUTH_CLIENT_ID'),
      redirect_uri: redirectUri,
      state: 'csrf-state-1',
      tenant: env('AGENTTRADER_OAUTH_TENANT'),
    }).toString();
    const approved = await fetch(authorize, { redirect: 'manual' });
    assert.equal(approved.status, 302);
    const back = new URL(approved.headers.get('location'));
    assert.equal(back.searchParams.get('state'), 'csrf-state-1');
    const code = back.searchParams.get('code');
    assert.ok(code);

    const connected = await bob.call('connect_alpaca', {
      code,
      redirect_uri: redirectUri,
      environment: 'paper',
      base_url: env('AGENTTRADER_ALPACA_BASE_URL'),
    });
    assert.deepEqual(connected, {
      status: 'connected',
      environment: 'paper',
      baseUrlHost: '127.0.0.1',
      auth: 'oauth',
    });
    const snapshot = await syncedSnapshot(bob.db, uid);
    assert.equal(typeof snapshot.equity, 'string');
    const config = await getDoc(doc(bob.db, `users/${uid}/config/alpaca`));
    assert.equal(config.data().configured, true);

    const gone = await bob.call('disconnect_alpaca');
    assert.equal(gone.status, 'disconnected');
    assert.equal(gone.auth, 'oauth');
    const after = await getDoc(doc(bob.db, `users/${uid}/config/alpaca`));
    assert.equal(after.data().configured, false);
    assert.equal((await bob.call('disconnect_alpaca')).status, 'not_connected');
  });

  it('a call without a signed-in user is unauthenticated', async () => {
    const app = initializeApp({ projectId: PROJECT, apiKey: 'fake-api-key' }, 'anonymous');
    try {
      const functions = getFunctions(app, REGION);
      const callables = hostPort(env('AGENTTRADER_CALLABLES_HOST'));
      connectFunctionsEmulator(functions, callables.host, callables.port);
      await rejectsWith(httpsCallable(functions, 'onboard_user')(), 'functions/unauthenticated');
    } finally {
      await deleteApp(app);
    }
  });
});
