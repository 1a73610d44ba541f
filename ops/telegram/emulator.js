#!/usr/bin/env node
// Starts the Telegram Bot API emulator (the npm package `telegram-test-api`, installed by
// `ops/telegram/install`) on 127.0.0.1 and keeps it running until SIGTERM or SIGINT.
//
//   node ops/telegram/emulator.js <port>      # or TELEGRAM_EMULATOR_PORT=<port>
//
// The package is a library, not a server binary: this is the few lines that construct and
// start it. It prints `ready <port>` on stdout once it listens. Bots use
// `http://127.0.0.1:<port>` as their Bot API base (`/bot<token>/<method>`); tests act as
// people through the emulator's client routes (`/sendMessage`, `/getUpdatesHistory`, ...).
//
// Environment:
//   SURFACES_TELEGRAM_EMULATOR       the install prefix (default: <repo>/.telegram-emulator)
//   TELEGRAM_EMULATOR_STORE_TIMEOUT  seconds messages are kept (default 3600; the package's
//                                    own default of 60 s would drop messages mid-test)
'use strict';

const path = require('path');

const prefix = process.env.SURFACES_TELEGRAM_EMULATOR
  || path.join(__dirname, '..', '..', '.telegram-emulator');
const port = Number(process.argv[2] || process.env.TELEGRAM_EMULATOR_PORT);
const storeTimeout = Number(process.env.TELEGRAM_EMULATOR_STORE_TIMEOUT || 3600);

function fail(message) {
  process.stderr.write(`ops/telegram/emulator.js: ${message}\n`);
  process.exit(1);
}

if (!Number.isInteger(port) || port <= 0 || port > 65535) {
  fail('usage: emulator.js <port> (or TELEGRAM_EMULATOR_PORT)');
}

let TelegramServer;
try {
  TelegramServer = require(path.join(prefix, 'node_modules', 'telegram-test-api'));
} catch (error) {
  fail(`telegram-test-api is not installed in ${prefix} (run ops/telegram/install): ${error.message}`);
}

const server = new TelegramServer({ port, host: '127.0.0.1', storeTimeout });

let stopping = false;
async function stop(signal) {
  if (stopping) return;
  stopping = true;
  process.stderr.write(`ops/telegram/emulator.js: ${signal}, stopping\n`);
  // Open keep-alive connections can hold the shutdown: do not wait for them for long.
  setTimeout(() => process.exit(0), 2000).unref();
  try {
    await server.stop();
  } finally {
    process.exit(0);
  }
}
process.on('SIGTERM', () => stop('SIGTERM'));
process.on('SIGINT', () => stop('SIGINT'));

server.start().then(
  () => process.stdout.write(`ready ${port}\n`),
  (error) => fail(`cannot listen on 127.0.0.1:${port}: ${error.message}`),
);
