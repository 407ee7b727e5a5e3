#!/usr/bin/env python3
"""event_subscribers.py: N Server-Sent Events subscribers of aipbx's GET /v1/events in one process.

    bench/event_subscribers.py PORT N OUTFILE [PATH]

Opens N connections to 127.0.0.1:PORT, sends GET PATH (default /v1/events) on each and reads them all
with one selector until the server closes every one (it does when it stops: a resume notice, reason
shutdown). Writes one line per subscriber to OUTFILE: the events it received (frames whose data is an event
object), 1 if it was cut as a slow subscriber (0 otherwise), and the id its last resume notice said to
resume after (-1 without one). Prints "connected" on stdout once every
request is sent. One process reading with large recv calls and counting with bytes.count costs far less
CPU than a curl per subscriber, so the load it adds to a 2-core machine is mostly the server's own.
"""
import re
import selectors
import socket
import sys

MARK = b'\ndata: {"id":'
CUT = b'slow_subscriber'
RESUME = re.compile(rb'event: resume\nid: (\d+)\n')


def main():
    port, n, outfile = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    path = sys.argv[4] if len(sys.argv) > 4 else "/v1/events"
    sel = selectors.DefaultSelector()
    state = []
    for i in range(n):
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n".encode())
        s.setblocking(False)
        state.append({"events": 0, "cut": 0, "tail": b"", "end": b""})
        sel.register(s, selectors.EVENT_READ, i)
    print("connected", flush=True)
    open_ = n
    while open_:
        for key, _ in sel.select():
            st = state[key.data]
            try:
                chunk = key.fileobj.recv(1 << 18)
            except BlockingIOError:
                continue
            except ConnectionError:
                chunk = b""
            if not chunk:
                sel.unregister(key.fileobj)
                key.fileobj.close()
                open_ -= 1
                continue
            # A mark may straddle two reads: the previous read's last bytes are looked at again, and what
            # was already counted in them is not counted twice.
            data = st["tail"] + chunk
            st["events"] += data.count(MARK) - st["tail"].count(MARK)
            st["cut"] += data.count(CUT) - st["tail"].count(CUT)
            st["tail"] = data[-max(len(MARK), len(CUT)):]
            st["end"] = (st["end"] + chunk)[-512:]
    with open(outfile, "w") as out:
        for st in state:
            resumes = RESUME.findall(st["end"])
            out.write(f"{st['events']} {st['cut']} {int(resumes[-1]) if resumes else -1}\n")


if __name__ == "__main__":
    main()
