// Two matrix-js-sdk clients with Rust crypto, each on its own homeserver, talk in an
// encrypted room across federation: Alice's server creates it, Bob joins over federation.
// Usage: node e2ee_federated.mjs '{"alice": {"baseUrl", "accessToken"}, "bob": {...}, "via": "<alice's server name>"}'
// Prints one JSON line with what happened; exits non-zero on failure.
import * as sdk from "matrix-js-sdk";
import { logger } from "matrix-js-sdk/lib/logger.js";

logger.setLevel(process.env.E2EE_DEBUG ? "warn" : "error");

const config = JSON.parse(process.argv[2]);
const deadline = setTimeout(() => fail("timed out"), 170_000);

const started = Date.now();
function step(name) {
    if (process.env.E2EE_DEBUG) console.error(`${Date.now() - started} ms: ${name}`);
}

function fail(message) {
    console.error(message);
    process.exit(1);
}

async function api(baseUrl, method, path, body, token) {
    const response = await fetch(baseUrl + path, {
        method,
        headers: { "Content-Type": "application/json", ...(token ? { Authorization: `Bearer ${token}` } : {}) },
        body: body === undefined ? undefined : JSON.stringify(body),
    });
    const json = await response.json();
    if (!response.ok) fail(`${method} ${baseUrl}${path}: ${response.status} ${JSON.stringify(json)}`);
    return json;
}

async function newClient({ baseUrl, accessToken }) {
    const me = await api(baseUrl, "GET", "/_matrix/client/v3/account/whoami", undefined, accessToken);
    const client = sdk.createClient({ baseUrl, userId: me.user_id, accessToken, deviceId: me.device_id });
    await client.initRustCrypto({ useIndexedDB: false });
    const prepared = new Promise((resolve) => {
        client.on(sdk.ClientEvent.Sync, (state) => { if (state === "PREPARED") resolve(); });
    });
    await client.startClient({ initialSyncLimit: 10 });
    await prepared;
    return client;
}

function waitFor(check, what, everyMs = 250) {
    return new Promise((resolve, reject) => {
        const timer = setInterval(async () => {
            try {
                const value = await check();
                if (value) { clearInterval(timer); resolve(value); }
            } catch (e) { clearInterval(timer); reject(e); }
        }, everyMs);
    }).catch((e) => fail(`${what}: ${e}`));
}

function decrypted(client, roomId, sender) {
    return new Promise((resolve) => {
        client.on(sdk.RoomEvent.Timeline, async (event, room) => {
            if (room?.roomId !== roomId || event.getSender() !== sender) return;
            if (event.getWireType() !== "m.room.encrypted") return;
            await client.decryptEventIfNeeded(event);
            if (event.getType() === "m.room.message") resolve(event);
        });
        // A late room key: the event is decrypted again when it arrives.
        client.on(sdk.MatrixEventEvent.Decrypted, (event) => {
            if (event.getRoomId() === roomId && event.getSender() === sender && event.getType() === "m.room.message") {
                resolve(event);
            }
        });
    });
}

const alice = await newClient(config.alice);
const bob = await newClient(config.bob);
step("clients ready");

// Each sees the other's device through its own server, which asks the other one.
await waitFor(async () => {
    const devices = await alice.getCrypto().getUserDeviceInfo([bob.getUserId()], true);
    return devices.get(bob.getUserId())?.has(bob.getDeviceId());
}, "Alice never saw Bob's device");
await waitFor(async () => {
    const devices = await bob.getCrypto().getUserDeviceInfo([alice.getUserId()], true);
    return devices.get(alice.getUserId())?.has(alice.getDeviceId());
}, "Bob never saw Alice's device");
step("devices seen across servers");

bob.on(sdk.RoomMemberEvent.Membership, (event, member) => {
    if (member.userId === bob.getUserId() && member.membership === "invite") {
        bob.joinRoom(member.roomId, { viaServers: [config.via] }).catch((e) => fail(`Bob's join failed: ${e}`));
    }
});

const { room_id: roomId } = await alice.createRoom({
    preset: "trusted_private_chat",
    is_direct: true,
    invite: [bob.getUserId()],
    initial_state: [{ type: "m.room.encryption", state_key: "", content: { algorithm: "m.megolm.v1.aes-sha2" } }],
});
await waitFor(() => alice.getRoom(roomId)?.getMember(bob.getUserId())?.membership === "join", "Bob never joined");
await waitFor(() => bob.getRoom(roomId)?.getMember(alice.getUserId())?.membership === "join", "Bob's room never had Alice");
step("Bob joined");
const encrypted = await alice.getCrypto().isEncryptionEnabledInRoom(roomId);

const bobReceived = decrypted(bob, roomId, alice.getUserId());
const sent = await alice.sendMessage(roomId, { msgtype: "m.text", body: "Hello Bob on Synapse, this is secret" });
const event = await bobReceived;
step("Bob decrypted");

// Alice's server stored only ciphertext.
const raw = await api(
    config.alice.baseUrl, "GET",
    `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/event/${encodeURIComponent(sent.event_id)}`,
    undefined, alice.getAccessToken(),
);

const aliceReceived = decrypted(alice, roomId, bob.getUserId());
await bob.sendMessage(roomId, { msgtype: "m.text", body: "Hi Alice, got it across servers" });
const answer = await aliceReceived;
step("Alice decrypted");

console.log(JSON.stringify({
    room_encrypted: encrypted,
    bob_read: event.getContent().body,
    bob_saw_wire_type: event.getWireType(),
    alice_read: answer.getContent().body,
    alice_saw_wire_type: answer.getWireType(),
    server_has_ciphertext: raw.type === "m.room.encrypted" && typeof raw.content.ciphertext === "string",
}));
clearTimeout(deadline);
alice.stopClient();
bob.stopClient();
process.exit(0);
