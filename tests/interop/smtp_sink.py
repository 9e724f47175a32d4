"""A real SMTP server for the tests (aiosmtpd): writes every message it receives to a
directory, one file each, its body decoded as a mail client would (quoted-printable,
base64). Usage: smtp_sink.py PORT DIR; PORT 0 takes any free port. Prints "ready PORT"
(the port it listens on) once listening."""
import asyncio
import email
import pathlib
import socket
import sys
import uuid

from aiosmtpd.controller import Controller


class Sink:
    def __init__(self, directory):
        self.directory = pathlib.Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)

    async def handle_DATA(self, server, session, envelope):
        message = email.message_from_bytes(envelope.content)
        headers = "".join(f"{k}: {v}\n" for k, v in message.items())
        body = message.get_payload(decode=True).decode("utf-8", "replace")
        text = f"X-Envelope-To: {','.join(envelope.rcpt_tos)}\n{headers}\n{body}"
        (self.directory / f"{uuid.uuid4()}.eml").write_text(text)
        return "250 OK"


class BoundController(Controller):
    """Serves on a socket bound here, so port 0 works and the port is known before start."""

    def __init__(self, handler, sock):
        self._sock = sock
        super().__init__(handler, hostname="127.0.0.1", port=sock.getsockname()[1])

    def _create_server(self):
        return self.loop.create_server(self._factory_invoker, sock=self._sock, ssl=self.ssl_context)


listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
listener.bind(("127.0.0.1", int(sys.argv[1])))
listener.listen(128)
controller = BoundController(Sink(sys.argv[2]), listener)
controller.start()
print(f"ready {controller.port}", flush=True)
try:
    asyncio.get_event_loop().run_forever()
finally:
    controller.stop()
