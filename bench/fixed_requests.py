# Sends exactly TOTAL GET requests over CONNS keep-alive connections; fails on any non-200.
# usage: fixed_requests.py HOST PORT PATH TOTAL CONNS
import http.client, sys, threading
host, port, path, total, conns = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
per = total // conns
errors = []
def run():
    c = http.client.HTTPConnection(host, port, timeout=60)
    for _ in range(per):
        c.request("GET", path)
        r = c.getresponse(); r.read()
        if r.status != 200: errors.append(r.status)
    c.close()
ts = [threading.Thread(target=run) for _ in range(conns)]
[t.start() for t in ts]; [t.join() for t in ts]
if errors: print("errors", len(errors), errors[:3]); sys.exit(1)
