"""The A2A test agent: a real A2A server for Surfaces' `kind = "a2a"` end-to-end tests.

Surfaces speaks A2A v1.0 (JSON-RPC binding) to its agents. To test that client against
something that is not ours, this script serves an agent built from the official `a2a-sdk`
server pieces (AgentExecutor, DefaultRequestHandler, InMemoryTaskStore, TaskUpdater, the
JSON-RPC and agent-card routes), so every byte on the wire is the SDK's own. Installed by
`ops/a2a/install`.

    python agent.py --port PORT [--no-streaming]

It listens on 127.0.0.1:PORT and prints nothing on start: poll
`http://127.0.0.1:PORT/.well-known/agent-card.json` until it answers. The JSON-RPC endpoint
is `POST http://127.0.0.1:PORT/`. With `--no-streaming` the card says
`capabilities.streaming = false` and the SDK refuses SendStreamingMessage / SubscribeToTask.

What it does is chosen by the text of the user's message (its text parts joined by "\\n",
compared trimmed and case-insensitively); every reply is a Task:

    <anything else>  streams "You said: <text> (message N in this context)" word by word as
                     one artifact (append chunks, lastChunk on the last), then completes.
                     N counts the messages this server has received in that contextId.
    ping             one whole artifact "pong", completed at once (the benchmark's turn:
                     no pacing of the server's own).
    status           a working status whose message says "Thinking...", then an artifact
                     "Done thinking." and completed.
    confirm          input-required, "Proceed with the plan?". The next message on the task:
                     "yes" -> "Confirmed: plan done.", anything else -> "Cancelled: plan
                     dropped.", then completed.
    ask              input-required, "What is your name?". The next message T on the task
                     -> "Nice to meet you, T." and completed.
    file             an artifact "report.txt" holding one inline-bytes file part, then a text
                     artifact "Here is your report.", then completed.
    slow             an artifact chunk "tick " every 200 ms; CancelTask stops it and leaves
                     the task canceled. Uncancelled, it ends after 60 s with a last chunk
                     "done" and completes.
    fail             failed, "The tool crashed."
    reject           rejected, "I will not do that."
    auth             auth-required, "Sign in to the calendar first."
    break            one artifact chunk "partial ", after which a SendStreamingMessage's HTTP
                     response is cut (connection closed, no end of stream) while the task
                     runs on: ~300 ms later the artifact is replaced by "partial and whole."
                     and the task completes. For testing SubscribeToTask after a lost stream.

A message carrying file parts (inline bytes or a URL) is answered, whatever its text, with
one text artifact per file: "Got file <name> (<N> bytes)" or "Got file <name> (url <url>)".

With A2A_REQUEST_LOG set, every POST is appended to that file, before it is handled, as
one JSON line {"method", "id", "params", "headers"} ({"body", "headers"} when the body is
not JSON). Header names are lower-cased, so tests can check `a2a-version` as well as the
messageId and contextId they sent.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import re
import sys

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import uvicorn

from starlette.applications import Starlette

from a2a.server.agent_execution import AgentExecutor, RequestContext
from a2a.server.events import EventQueue
from a2a.server.request_handlers import DefaultRequestHandler
from a2a.server.routes import create_agent_card_routes, create_jsonrpc_routes
from a2a.server.tasks import InMemoryTaskStore, TaskUpdater
from a2a.types import (
    AgentCapabilities,
    AgentCard,
    AgentInterface,
    AgentSkill,
    Message,
    Part,
    Task,
    TaskState,
    TaskStatus,
)
from a2a.utils.constants import PROTOCOL_VERSION_1_0, TransportProtocol


RPC_PATH = '/'

CONFIRM_QUESTION = 'Proceed with the plan?'
NAME_QUESTION = 'What is your name?'
REPORT_BYTES = b'report contents\n'
BREAK_KEYWORD = 'break'

CHUNK_DELAY = 0.05  # between the words of an echo
TICK_DELAY = 0.2  # between the ticks of "slow"
SLOW_LIMIT = 60.0  # how long "slow" ticks before it completes on its own
BREAK_RESUME_DELAY = 0.3  # how long "break" keeps working after the cut

Scope = MutableMapping[str, Any]
AsgiMessage = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[AsgiMessage]]
Send = Callable[[AsgiMessage], Awaitable[None]]


def joined_text(parts: Any) -> str:
    """The text parts of a message, joined by newlines."""
    return '\n'.join(part.text for part in parts if part.HasField('text'))


def file_parts(parts: Any) -> list[Part]:
    """The parts that carry a file: inline bytes (`raw`) or a `url`."""
    return [part for part in parts if part.HasField('raw') or part.HasField('url')]


def text_part(text: str) -> Part:
    return Part(text=text)


def words(text: str) -> list[str]:
    """`text` cut after each run of whitespace; joined again they give back `text`."""
    return re.findall(r'\S+\s*|\s+', text)


class TestAgentExecutor(AgentExecutor):
    """Picks a behaviour from the user's text and drives the task with a TaskUpdater."""

    def __init__(self) -> None:
        # contextId -> user messages received in it.
        self._messages_seen: dict[str, int] = {}
        # taskId -> set by cancel(), so a loop stops before enqueuing anything more.
        self._stops: dict[str, asyncio.Event] = {}

    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        message = context.message
        if message is None:
            raise ValueError('no message to answer')
        task = context.current_task
        if task is None:
            # A new task: the SDK wants the Task itself before any status update.
            task = Task(
                id=context.task_id,
                context_id=context.context_id,
                status=TaskStatus(state=TaskState.TASK_STATE_SUBMITTED),
                history=[message],
            )
            await event_queue.enqueue_event(task)
        # An existing task keeps its own contextId, whatever the follow-up says.
        updater = TaskUpdater(event_queue, task.id, task.context_id)
        seen = self._messages_seen.get(task.context_id, 0) + 1
        self._messages_seen[task.context_id] = seen

        stop = self._stops.setdefault(task.id, asyncio.Event())
        try:
            await self._dispatch(updater, task, message, seen, stop)
        finally:
            self._stops.pop(task.id, None)

    async def cancel(self, context: RequestContext, event_queue: EventQueue) -> None:
        task_id = context.task_id or ''
        stop = self._stops.get(task_id)
        if stop is not None:
            stop.set()
        context_id = context.context_id or (
            context.current_task.context_id if context.current_task else ''
        )
        await TaskUpdater(event_queue, task_id, context_id).cancel()

    async def _dispatch(
        self,
        updater: TaskUpdater,
        task: Task,
        message: Message,
        seen: int,
        stop: asyncio.Event,
    ) -> None:
        text = joined_text(message.parts)
        keyword = text.strip().lower()

        # A reply to our own question, on a task left in input-required.
        if task.status.state == TaskState.TASK_STATE_INPUT_REQUIRED:
            question = joined_text(task.status.message.parts)
            if question == CONFIRM_QUESTION:
                await updater.start_work()
                answer = (
                    'Confirmed: plan done.'
                    if keyword == 'yes'
                    else 'Cancelled: plan dropped.'
                )
                await self._answer(updater, answer)
                return
            if question == NAME_QUESTION:
                await updater.start_work()
                await self._answer(updater, f'Nice to meet you, {text.strip()}.')
                return

        files = file_parts(message.parts)
        if keyword == 'status' and not files:
            await updater.start_work(
                updater.new_agent_message([text_part('Thinking...')])
            )
        else:
            await updater.start_work()

        if files:
            for index, part in enumerate(files, start=1):
                name = part.filename or 'unnamed'
                if part.HasField('raw'):
                    line = f'Got file {name} ({len(part.raw)} bytes)'
                else:
                    line = f'Got file {name} (url {part.url})'
                await updater.add_artifact(
                    [text_part(line)], artifact_id=f'file-{index}', last_chunk=True
                )
            await updater.complete()
            return

        match keyword:
            case 'ping':
                await self._answer(updater, 'pong')
            case 'status':
                # The working status above carried "Thinking...".
                await asyncio.sleep(0.1)
                await self._answer(updater, 'Done thinking.')
            case 'confirm':
                await updater.requires_input(
                    updater.new_agent_message([text_part(CONFIRM_QUESTION)])
                )
            case 'ask':
                await updater.requires_input(
                    updater.new_agent_message([text_part(NAME_QUESTION)])
                )
            case 'file':
                await updater.add_artifact(
                    [
                        Part(
                            raw=REPORT_BYTES,
                            filename='report.txt',
                            media_type='text/plain',
                        )
                    ],
                    artifact_id='report',
                    name='report.txt',
                    last_chunk=True,
                )
                await self._answer(updater, 'Here is your report.')
            case 'slow':
                await self._tick(updater, stop)
            case 'fail':
                await updater.failed(
                    updater.new_agent_message([text_part('The tool crashed.')])
                )
            case 'reject':
                await updater.reject(
                    updater.new_agent_message([text_part('I will not do that.')])
                )
            case 'auth':
                await updater.requires_auth(
                    updater.new_agent_message(
                        [text_part('Sign in to the calendar first.')]
                    )
                )
            case 'break':
                # RpcTap cuts a streaming response right after this chunk.
                await updater.add_artifact(
                    [text_part('partial ')], artifact_id='reply'
                )
                await asyncio.sleep(BREAK_RESUME_DELAY)
                # Not append: the whole text replaces the partial artifact.
                await updater.add_artifact(
                    [text_part('partial and whole.')],
                    artifact_id='reply',
                    last_chunk=True,
                )
                await updater.complete()
            case _:
                reply = f'You said: {text} (message {seen} in this context)'
                await self._stream(updater, words(reply))
                await updater.complete()

    async def _answer(self, updater: TaskUpdater, text: str) -> None:
        """One whole text artifact, then completed."""
        await updater.add_artifact([text_part(text)], artifact_id='reply', last_chunk=True)
        await updater.complete()

    async def _stream(self, updater: TaskUpdater, pieces: list[str]) -> None:
        """`pieces` as chunks of one artifact: the first creates it, the rest append."""
        for index, piece in enumerate(pieces):
            if index:
                await asyncio.sleep(CHUNK_DELAY)
            await updater.add_artifact(
                [text_part(piece)],
                artifact_id='reply',
                append=index > 0,
                last_chunk=index == len(pieces) - 1,
            )

    async def _tick(self, updater: TaskUpdater, stop: asyncio.Event) -> None:
        """Sends "tick " chunks until cancelled (stop set) or SLOW_LIMIT runs out."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + SLOW_LIMIT
        first = True
        while loop.time() < deadline:
            if stop.is_set():
                return
            await updater.add_artifact(
                [text_part('tick ')], artifact_id='ticks', append=not first
            )
            first = False
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), TICK_DELAY)
        if stop.is_set():
            return
        await updater.add_artifact(
            [text_part('done')], artifact_id='ticks', append=not first, last_chunk=True
        )
        await updater.complete()


class StreamCut(Exception):
    """Raised to make uvicorn drop a streaming response mid-way (the "break" behaviour)."""


class DropStreamCut(logging.Filter):
    """Keeps the deliberate cut out of uvicorn's error log."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], StreamCut))


class RpcTap:
    """ASGI middleware in front of the SDK's app.

    It reads each POST body whole (then replays it to the app) to append it to the
    A2A_REQUEST_LOG file, and, for a SendStreamingMessage whose text is "break", lets the
    response run until its first artifactUpdate event and then raises StreamCut: uvicorn,
    with the response already started, closes the connection without ending the chunked
    body. The SDK runs the agent apart from the connection, so the task carries on.
    """

    def __init__(self, app: Any, log_path: str | None) -> None:
        self.app = app
        self.log_path = log_path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope['type'] != 'http' or scope['method'] != 'POST':
            await self.app(scope, receive, send)
            return

        chunks = []
        while True:
            message = await receive()
            if message['type'] != 'http.request':
                # Gone before the body arrived: nothing to answer.
                return
            chunks.append(message.get('body', b''))
            if not message.get('more_body', False):
                break
        body = b''.join(chunks)

        try:
            request = json.loads(body)
        except ValueError:
            request = None
        self._log(scope, body, request)

        replayed = False

        async def replay() -> AsgiMessage:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {'type': 'http.request', 'body': body, 'more_body': False}
            return await receive()

        if not _is_streamed_break(request):
            await self.app(scope, replay, send)
            return

        cut = False

        async def send_until_cut(message: AsgiMessage) -> None:
            nonlocal cut
            await send(message)
            if message['type'] == 'http.response.body' and b'"artifactUpdate"' in message.get(
                'body', b''
            ):
                cut = True
                raise StreamCut

        try:
            await self.app(scope, replay, send_until_cut)
        except BaseException:
            if cut:
                raise StreamCut from None
            raise
        if cut:
            raise StreamCut

    def _log(self, scope: Scope, body: bytes, request: Any) -> None:
        if not self.log_path:
            return
        headers: dict[str, str] = {}
        for raw_name, raw_value in scope['headers']:
            name = raw_name.decode('latin-1').lower()
            value = raw_value.decode('latin-1')
            headers[name] = f'{headers[name]}, {value}' if name in headers else value
        if isinstance(request, dict):
            line = {
                'method': request.get('method'),
                'id': request.get('id'),
                'params': request.get('params'),
                'headers': headers,
            }
        else:
            line = {'body': body.decode('utf-8', 'replace'), 'headers': headers}
        with open(self.log_path, 'a', encoding='utf-8') as log:
            log.write(json.dumps(line, ensure_ascii=False) + '\n')


def _is_streamed_break(request: Any) -> bool:
    if not isinstance(request, dict) or request.get('method') != 'SendStreamingMessage':
        return False
    params = request.get('params')
    message = params.get('message') if isinstance(params, dict) else None
    parts = message.get('parts') if isinstance(message, dict) else None
    if not isinstance(parts, list):
        return False
    text = '\n'.join(
        part['text']
        for part in parts
        if isinstance(part, dict) and isinstance(part.get('text'), str)
    )
    return text.strip().lower() == BREAK_KEYWORD


def agent_card(port: int, streaming: bool) -> AgentCard:
    return AgentCard(
        name='Test Agent',
        description="An A2A agent for Surfaces' tests.",
        version='1.0.0',
        supported_interfaces=[
            AgentInterface(
                url=f'http://127.0.0.1:{port}{RPC_PATH}',
                protocol_binding=TransportProtocol.JSONRPC.value,
                protocol_version=PROTOCOL_VERSION_1_0,
            )
        ],
        capabilities=AgentCapabilities(streaming=streaming),
        default_input_modes=['text/plain'],
        default_output_modes=['text/plain'],
        skills=[
            AgentSkill(
                id='echo',
                name='Echo',
                description='Repeats what you say.',
                tags=['echo'],
            ),
            AgentSkill(
                id='files',
                name='Files',
                description='Makes and reads files.',
                tags=['files'],
            ),
        ],
    )


def build_app(port: int, streaming: bool) -> RpcTap:
    card = agent_card(port, streaming)
    handler = DefaultRequestHandler(
        agent_executor=TestAgentExecutor(),
        task_store=InMemoryTaskStore(),
        agent_card=card,
    )

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> Any:
        try:
            yield
        finally:
            await handler.aclose()

    app = Starlette(
        routes=[
            *create_agent_card_routes(card),
            *create_jsonrpc_routes(handler, rpc_url=RPC_PATH),
        ],
        lifespan=lifespan,
    )
    return RpcTap(app, os.environ.get('A2A_REQUEST_LOG') or None)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--port', type=int, required=True)
    parser.add_argument(
        '--no-streaming',
        dest='streaming',
        action='store_false',
        help='advertise capabilities.streaming = false',
    )
    args = parser.parse_args(argv)

    logging.getLogger('uvicorn.error').addFilter(DropStreamCut())
    uvicorn.run(
        build_app(args.port, args.streaming),
        host='127.0.0.1',
        port=args.port,
        log_level='warning',
    )


if __name__ == '__main__':
    sys.exit(main())
