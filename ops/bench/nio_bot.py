"""The peer of `ops/bench` part 1: a matrix-nio echo bot, for comparison with Surfaces.

matrix-nio (`AsyncClient`) is the library most Python Matrix bots are built on, so this is
what "a bot written the usual way" costs on the same homeserver, beside Surfaces and the
floor (`floor_bot.rs`). Logs in with a password (nio's sqlite store, end-to-end encryption
on), uploads its keys, joins every room it is invited to, and answers each text message
from someone else with the same text, as a rich reply. Messages from before it started are
not answered (its first sync only catches up). It syncs with nio's own `sync_forever`, back
to back, and sends the reply from the event callback, as nio's examples do. Nothing else:
no typing notice, no read receipt, no device verification (unverified devices get the room
key all the same).

`nio_bot.py HOMESERVER USER PASSWORD STORE_DIR` (run with `ops/bench/install-nio`'s venv)
-- prints `nio bot ready` when it syncs live; exits on SIGTERM.
"""

import asyncio
import logging
import os
import signal
import sys

from nio import (
    AsyncClient,
    AsyncClientConfig,
    InviteMemberEvent,
    JoinError,
    LoginResponse,
    MatrixRoom,
    MegolmEvent,
    RoomMessageText,
    SyncResponse,
)
from nio.exceptions import LocalProtocolError

SYNC_TIMEOUT_MS = 30_000
JOIN_ATTEMPTS = 10


def say(text: str) -> None:
    print(f"nio bot: {text}", file=sys.stderr, flush=True)


class EchoBot:
    def __init__(self, client: AsyncClient) -> None:
        self.client = client

    async def join(self, room_id: str) -> None:
        for attempt in range(JOIN_ATTEMPTS):
            if not isinstance(await self.client.join(room_id), JoinError):
                return
            await asyncio.sleep(0.1 * (attempt + 1))
        say(f"cannot join {room_id}")

    async def on_invite(self, room: MatrixRoom, event: InviteMemberEvent) -> None:
        if event.state_key == self.client.user_id and event.membership == "invite":
            await self.join(room.room_id)

    async def on_text(self, room: MatrixRoom, event: RoomMessageText) -> None:
        if event.sender == self.client.user_id:
            return
        content = {
            "msgtype": "m.text",
            "body": event.body,
            "m.relates_to": {"m.in_reply_to": {"event_id": event.event_id}},
        }
        # An exception here would end `sync_forever`, and the bot with it.
        try:
            response = await self.client.room_send(
                room.room_id,
                "m.room.message",
                content,
                ignore_unverified_devices=True,
            )
        except Exception as error:  # noqa: BLE001 (logged; the bot goes on)
            say(f"cannot reply in {room.room_id}: {error!r}")
            return
        if not hasattr(response, "event_id"):
            say(f"cannot reply in {room.room_id}: {response}")

    async def on_undecryptable(self, room: MatrixRoom, event: MegolmEvent) -> None:
        say(
            f"cannot decrypt {event.event_id} from {event.sender} in {room.room_id} "
            f"(session {event.session_id}); asking for the room key"
        )
        if event.session_id in self.client.outgoing_key_requests:
            return
        try:
            await self.client.request_room_key(event)
        except LocalProtocolError as error:
            say(f"room key request: {error}")


async def run(homeserver: str, user: str, password: str, store: str) -> int:
    os.makedirs(store, exist_ok=True)
    config = AsyncClientConfig(encryption_enabled=True, store_sync_tokens=True)
    client = AsyncClient(homeserver, user, store_path=store, config=config)
    try:
        login = await client.login(password, device_name="bench nio bot")
        if not isinstance(login, LoginResponse):
            say(f"login failed: {login}")
            return 1
        if client.should_upload_keys:
            await client.keys_upload()
        # First sync: history, not answered (no callbacks yet); rooms invited to meanwhile
        # are joined.
        first = await client.sync(timeout=0, full_state=True)
        if not isinstance(first, SyncResponse):
            say(f"first sync failed: {first}")
            return 1
        bot = EchoBot(client)
        for room_id in list(client.invited_rooms):
            await bot.join(room_id)
        client.add_event_callback(bot.on_invite, InviteMemberEvent)
        client.add_event_callback(bot.on_text, RoomMessageText)
        client.add_event_callback(bot.on_undecryptable, MegolmEvent)

        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        syncing = asyncio.create_task(client.sync_forever(timeout=SYNC_TIMEOUT_MS))
        stopping = asyncio.create_task(stop.wait())
        print("nio bot ready", flush=True)
        await asyncio.wait({syncing, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if not syncing.done():
            syncing.cancel()
            stopping.cancel()
            await asyncio.gather(syncing, stopping, return_exceptions=True)
            return 0
        stopping.cancel()
        error = syncing.exception()
        say(f"sync stopped: {error!r}")
        return 1
    finally:
        await client.close()


def main() -> int:
    if len(sys.argv) != 5:
        print("usage: nio_bot.py HOMESERVER USER PASSWORD STORE_DIR", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    return asyncio.run(run(*sys.argv[1:]))


if __name__ == "__main__":
    sys.exit(main())
