"""A real SMTP server for the tests (aiosmtpd): writes every message it receives to a
directory, one file each, its body decoded as a mail client would (quoted-printable,
base64). Usage: smtp_sink.py PORT DIR. Prints "ready" once listening."""
import asyncio
import email
import pathlib
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


controller = Controller(Sink(sys.argv[2]), hostname="127.0.0.1", port=int(sys.argv[1]))
controller.start()
print("ready", flush=True)
try:
    asyncio.get_event_loop().run_forever()
finally:
    controller.stop()
