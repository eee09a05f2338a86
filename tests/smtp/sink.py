"""A real SMTP server for the delivery tests, on aiosmtpd.

Usage: python sink.py DIR

Listens on 127.0.0.1 on a free port, prints the port on the first line of standard output,
and writes every accepted message to DIR/NNNNNN.eml (complete files only: written under a
temporary name, then renamed). The recipient's local part steers the answer to RCPT TO:

- `defer...`  : 451 the first time this address is seen, accepted afterwards;
- `reject...` : 550 5.1.1 every time;
- `drop...`   : the connection is closed without an answer the first time, accepted
                afterwards;
- `spam...`   : 554 at the end of DATA (the message refused, not the address).

A sender whose local part starts with `blocked` is refused at MAIL FROM (550 5.7.1).
"""

import asyncio
import itertools
import os
import sys

from aiosmtpd.smtp import SMTP

SEEN = set()
COUNTER = itertools.count(1)


class Handler:
    def __init__(self, directory):
        self.directory = directory

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        if address.split("@", 1)[0].lower().startswith("blocked"):
            return "550 5.7.1 <%s>: Sender address rejected: Access denied" % address
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 2.1.0 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        local = address.split("@", 1)[0].lower()
        first = address.lower() not in SEEN
        SEEN.add(address.lower())
        if local.startswith("defer") and first:
            return "451 4.3.0 Try again later"
        if local.startswith("reject"):
            return "550 5.1.1 <%s>: Recipient address rejected: User unknown" % address
        if local.startswith("drop") and first:
            server.transport.close()
            return "421 4.4.2 Closing connection"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server, session, envelope):
        if any(r.split("@", 1)[0].lower().startswith("spam") for r in envelope.rcpt_tos):
            return "554 5.7.1 Message rejected as spam"
        n = next(COUNTER)
        name = os.path.join(self.directory, "%06d.eml" % n)
        partial = os.path.join(self.directory, ".%06d.partial" % n)
        with open(partial, "wb") as f:
            f.write(("X-Envelope-To: %s\r\n" % ",".join(envelope.rcpt_tos)).encode())
            f.write(("X-Ehlo: %s\r\n" % session.host_name).encode())
            f.write(envelope.original_content)
        os.rename(partial, name)
        return "250 2.0.0 Queued as %d" % n


async def main(directory):
    loop = asyncio.get_running_loop()
    handler = Handler(directory)
    server = await loop.create_server(
        lambda: SMTP(handler, hostname="sink.test", data_size_limit=None),
        host="127.0.0.1",
        port=0,
    )
    port = server.sockets[0].getsockname()[1]
    print(port, flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
