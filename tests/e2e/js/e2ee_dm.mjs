// Two users of matrix-js-sdk with its Rust crypto talk in an encrypted DM, as Element does.
// Usage: node e2ee_dm.mjs <homeserver base url>
// Prints one JSON line with what happened; exits non-zero on failure.
import * as sdk from "matrix-js-sdk";
import { logger } from "matrix-js-sdk/lib/logger.js";

logger.setLevel("error");

const baseUrl = process.argv[2];
const PASSWORD = "a strong password";
const deadline = setTimeout(() => fail("timed out"), 90_000);

const started = Date.now();
function step(name) {
    if (process.env.E2EE_DEBUG) console.error(`${Date.now() - started} ms: ${name}`);
}

function fail(message) {
    console.error(message);
    process.exit(1);
}

async function api(method, path, body, token) {
    const response = await fetch(baseUrl + path, {
        method,
        headers: { "Content-Type": "application/json", ...(token ? { Authorization: `Bearer ${token}` } : {}) },
        body: body === undefined ? undefined : JSON.stringify(body),
    });
    const json = await response.json();
    if (!response.ok) fail(`${method} ${path}: ${response.status} ${JSON.stringify(json)}`);
    return json;
}

async function newClient(name) {
    const session = await api("POST", "/_matrix/client/v3/register", {
        username: name, password: PASSWORD, auth: { type: "m.login.dummy" },
        initial_device_display_name: `${name}'s browser`,
    });
    const client = sdk.createClient({
        baseUrl, userId: session.user_id, accessToken: session.access_token, deviceId: session.device_id,
    });
    await client.initRustCrypto({ useIndexedDB: false });
    const prepared = new Promise((resolve) => {
        client.on(sdk.ClientEvent.Sync, (state) => { if (state === "PREPARED") resolve(); });
    });
    await client.startClient({ initialSyncLimit: 10 });
    await prepared;
    return client;
}

function waitFor(check, what) {
    return new Promise((resolve, reject) => {
        const timer = setInterval(async () => {
            try {
                const value = await check();
                if (value) { clearInterval(timer); resolve(value); }
            } catch (e) { clearInterval(timer); reject(e); }
        }, 100);
    }).catch((e) => fail(`${what}: ${e}`));
}

const alice = await newClient("alice");
const bob = await newClient("bob");
step("clients ready");

// Bob's device keys reach the server and Alice's crypto sees them (via /keys/query).
await waitFor(async () => {
    const devices = await alice.getCrypto().getUserDeviceInfo([bob.getUserId()], true);
    return devices.get(bob.getUserId())?.has(bob.getDeviceId());
}, "Alice never saw Bob's device");

step("Alice sees Bob's device");
bob.on(sdk.RoomMemberEvent.Membership, (event, member) => {
    if (member.userId === bob.getUserId() && member.membership === "invite") bob.joinRoom(member.roomId);
});

const { room_id: roomId } = await alice.createRoom({
    preset: "trusted_private_chat",
    is_direct: true,
    invite: [bob.getUserId()],
    initial_state: [{ type: "m.room.encryption", state_key: "", content: { algorithm: "m.megolm.v1.aes-sha2" } }],
});
await waitFor(() => alice.getRoom(roomId)?.getMember(bob.getUserId())?.membership === "join", "Bob never joined");
step("Bob joined");
const encrypted = await alice.getCrypto().isEncryptionEnabledInRoom(roomId);

const received = new Promise((resolve) => {
    bob.on(sdk.RoomEvent.Timeline, async (event, room) => {
        if (room?.roomId !== roomId || event.getSender() !== alice.getUserId()) return;
        if (event.getWireType() !== "m.room.encrypted") return;
        await bob.decryptEventIfNeeded(event);
        if (event.getType() === "m.room.message") resolve(event);
    });
});
const sent = await alice.sendMessage(roomId, { msgtype: "m.text", body: "Hello Bob, this is secret" });
const event = await received;
step("Bob decrypted");

// The server only ever saw ciphertext.
const raw = await api(
    "GET", `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/event/${encodeURIComponent(sent.event_id)}`,
    undefined, alice.getAccessToken(),
);

// And Bob answers, which Alice decrypts in turn.
const answered = new Promise((resolve) => {
    alice.on(sdk.RoomEvent.Timeline, async (ev, room) => {
        if (room?.roomId !== roomId || ev.getSender() !== bob.getUserId()) return;
        await alice.decryptEventIfNeeded(ev);
        if (ev.getType() === "m.room.message") resolve(ev);
    });
});
await bob.sendMessage(roomId, { msgtype: "m.text", body: "Hi Alice, got it" });
const answer = await answered;
step("Alice decrypted");

console.log(JSON.stringify({
    room_encrypted: encrypted,
    bob_read: event.getContent().body,
    bob_saw_wire_type: event.getWireType(),
    decryption_failure: event.isDecryptionFailure(),
    server_type: raw.type,
    server_has_ciphertext: typeof raw.content.ciphertext === "string",
    server_body: raw.content.body ?? null,
    alice_read: answer.getContent().body,
}));
clearTimeout(deadline);
alice.stopClient();
bob.stopClient();
process.exit(0);
