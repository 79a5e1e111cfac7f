// A journalist on Element's own client stack: matrix-js-sdk with its Rust crypto
// (@matrix-org/matrix-sdk-crypto-wasm), in "exclude insecure devices" mode.
//
// Driven by tests/integration/element/driver.py over stdin/stdout, one JSON object per line:
//   request  {"id": 1, "cmd": "login", "args": {...}}
//   response {"id": 1, "ok": true, "result": ...} or {"id": 1, "ok": false, "error": "..."}
// Everything else the SDK prints goes to stderr. One process can hold several
// journalists (by user id), so a test module starts Node once.

import "./node20.mjs";
import "fake-indexeddb/auto";
import * as readline from "node:readline";

import * as sdk from "matrix-js-sdk";
import {
    EventShieldColour,
    EventShieldReason,
    OnlySignedDevicesIsolationMode,
    VerificationPhase,
} from "matrix-js-sdk/lib/crypto-api/index.js";
import { logger } from "matrix-js-sdk/lib/logger.js";

// The protocol owns stdout; the SDK's chatter goes to stderr.
console.log = console.info = console.debug = (...args) => process.stderr.write(args.join(" ") + "\n");
logger.setLevel(process.env.JOURNALIST_LOG_LEVEL || "warn");

const clients = new Map();

function client(userId) {
    const found = clients.get(userId);
    if (!found) throw new Error(`no journalist ${userId} logged in`);
    return found;
}

function sleep(ms) {
    return new Promise((resolve) => setTimeout(resolve, ms));
}

async function until(what, timeoutMs, check) {
    const end = Date.now() + timeoutMs;
    for (;;) {
        const result = await check();
        if (result !== undefined && result !== null && result !== false) return result;
        if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
        await sleep(100);
    }
}

const commands = {
    // Log in with a password, start the Rust crypto, publish cross-signing keys (as Element
    // does at first login) and switch on "exclude insecure devices".
    async login({ baseUrl, userId, password }) {
        const anonymous = sdk.createClient({ baseUrl });
        const login = await anonymous.loginRequest({
            type: "m.login.password",
            identifier: { type: "m.id.user", user: userId },
            password,
            initial_device_display_name: "Element (test journalist)",
        });
        const c = sdk.createClient({
            baseUrl, userId: login.user_id, deviceId: login.device_id, accessToken: login.access_token,
        });
        await c.initRustCrypto({ useIndexedDB: false });
        const crypto = c.getCrypto();
        await crypto.bootstrapCrossSigning({
            authUploadDeviceSigningKeys: async (makeRequest) => {
                await makeRequest({ type: "m.login.password", identifier: { type: "m.id.user", user: userId }, password });
            },
        });
        crypto.setDeviceIsolationMode(new OnlySignedDevicesIsolationMode());
        const prepared = new Promise((resolve) => {
            c.on(sdk.ClientEvent.Sync, (state) => { if (state === "PREPARED" || state === "SYNCING") resolve(); });
        });
        await c.startClient({ initialSyncLimit: 10 });
        await prepared;
        clients.set(userId, c);
        return { userId: login.user_id, deviceId: login.device_id };
    },

    async createRoom({ userId, invite, encrypted, direct }) {
        const c = client(userId);
        const initial_state = encrypted
            ? [{ type: "m.room.encryption", state_key: "", content: { algorithm: "m.megolm.v1.aes-sha2" } }]
            : [];
        const { room_id } = await c.createRoom({
            invite, initial_state, is_direct: Boolean(direct),
            preset: direct ? "trusted_private_chat" : "private_chat",
            name: direct ? undefined : `newsroom-${Date.now()}`,
        });
        await until(`room ${room_id} in the sync`, 30000, () => c.getRoom(room_id));
        return { roomId: room_id };
    },

    async join({ userId, roomId }) {
        const c = client(userId);
        await c.joinRoom(roomId);
        await until(`${userId} in ${roomId}`, 30000, () => c.getRoom(roomId)?.getMyMembership() === "join");
        return {};
    },

    async waitJoin({ userId, roomId, member, timeoutMs = 60000 }) {
        const c = client(userId);
        await until(`${member} to join ${roomId}`, timeoutMs,
            () => c.getRoom(roomId)?.getMember(member)?.membership === "join");
        return {};
    },

    // Send as Element's composer does: "m.mentions" always present, empty without a pill.
    async send({ userId, roomId, content }) {
        const c = client(userId);
        const { event_id } = await c.sendMessage(roomId, content);
        return { eventId: event_id };
    },

    // The first message from `sender` that replies to `eventId`, decrypted, with its shield.
    async waitReply({ userId, roomId, eventId, sender, timeoutMs = 60000 }) {
        const c = client(userId);
        const event = await until(`a reply from ${sender} to ${eventId}`, timeoutMs, () => {
            const events = c.getRoom(roomId)?.getLiveTimeline().getEvents() ?? [];
            return events.find((e) => e.getSender() === sender
                && e.getWireContent()?.["m.relates_to"]?.["m.in_reply_to"]?.event_id === eventId);
        });
        return await describe(c, event);
    },

    // Whether any message from `sender` arrived after `eventId` (for "chatter is not answered").
    async messagesFrom({ userId, roomId, sender }) {
        const c = client(userId);
        const events = c.getRoom(roomId)?.getLiveTimeline().getEvents() ?? [];
        return { eventIds: events.filter((e) => e.getSender() === sender && e.getWireType() !== "m.room.member"
            && e.getWireType() !== "m.reaction").map((e) => e.getId()) };
    },

    // How this journalist's crypto sees another device (the bot's). The Rust crypto keeps devices of
    // users it shares an encrypted room with; wait up to timeoutMs for the device to show up signed.
    async deviceStatus({ userId, otherUser, deviceId, timeoutMs = 15000 }) {
        const crypto = client(userId).getCrypto();
        const end = Date.now() + timeoutMs;
        for (;;) {
            const status = await crypto.getDeviceVerificationStatus(otherUser, deviceId);
            const result = {
                known: Boolean(status),
                signedByOwner: Boolean(status?.signedByOwner),
                crossSigningVerified: Boolean(status?.crossSigningVerified),
            };
            if (result.signedByOwner || Date.now() > end) return result;
            await sleep(250);
        }
    },

    // Element's "Verify session": a to-device verification request; resolves when it ends.
    async verifyDevice({ userId, otherUser, deviceId, timeoutMs = 30000 }) {
        const crypto = client(userId).getCrypto();
        await crypto.getUserDeviceInfo([otherUser], true);
        const request = await crypto.requestDeviceVerification(otherUser, deviceId);
        return await ended(request, timeoutMs);
    },

    // Element's "Verify" on a person: an in-room request in the direct chat; resolves when it ends.
    async verifyUserInRoom({ userId, otherUser, roomId, timeoutMs = 30000 }) {
        const request = await client(userId).getCrypto().requestVerificationDM(otherUser, roomId);
        return await ended(request, timeoutMs);
    },

    async stop() {
        for (const c of clients.values()) c.stopClient();
        clients.clear();
        setTimeout(() => process.exit(0), 50);
        return {};
    },
};

async function ended(request, timeoutMs) {
    await until("the verification request to end", timeoutMs,
        () => request.phase === VerificationPhase.Cancelled || request.phase === VerificationPhase.Done);
    return {
        phase: VerificationPhase[request.phase],
        cancellationCode: request.cancellationCode,
        cancellingUserId: request.cancellingUserId ?? null,
    };
}

async function describe(c, event) {
    await c.decryptEventIfNeeded(event);
    const info = event.isEncrypted() ? await c.getCrypto().getEncryptionInfoForEvent(event) : null;
    return {
        eventId: event.getId(),
        encrypted: event.isEncrypted(),
        decryptionFailure: event.isDecryptionFailure(),
        decryptionFailureReason: event.decryptionFailureReason ?? null,
        content: event.getContent(),
        shieldColour: info ? EventShieldColour[info.shieldColour] : null,
        shieldReason: info && info.shieldReason !== null ? EventShieldReason[info.shieldReason] : null,
    };
}

const lines = readline.createInterface({ input: process.stdin });
lines.on("line", async (line) => {
    let id = null;
    try {
        const request = JSON.parse(line);
        id = request.id;
        const command = commands[request.cmd];
        if (!command) throw new Error(`unknown command ${request.cmd}`);
        const result = await command(request.args ?? {});
        process.stdout.write(JSON.stringify({ id, ok: true, result }) + "\n");
    } catch (error) {
        process.stdout.write(JSON.stringify({ id, ok: false, error: String(error?.stack ?? error) }) + "\n");
    }
});
lines.on("close", () => process.exit(0));
