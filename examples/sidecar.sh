#!/bin/sh
# A node's side of the sidecar protocol, with curl: feed addresses, ask whom
# to dial, report outcomes. Run against a peerd started with ./scripts/run.
#   PEERD=127.0.0.1:7412 ./examples/sidecar.sh
set -eu
api=${PEERD:-127.0.0.1:7412}
j() { curl -sS --max-time 5 -H 'Content-Type: application/json' "$@"; echo; }

echo "# the node learned some addresses from a peer at 9.9.9.9"
j -XPOST "http://$api/v1/book" \
  -d '{"addrs":["1.2.3.4:26656","5.6.7.8:26656","[2a01:4f8::1]:26656","10.0.0.1:26656"],"source":"9.9.9.9"}'

echo "# whom should the node dial?"
j "http://$api/v1/dial?n=2"

echo "# it dialled 1.2.3.4: the attempt, the connection, and that it was useful"
for ev in attempt connected good; do
  j -XPOST "http://$api/v1/events" -d "{\"addr\":\"1.2.3.4:26656\",\"event\":\"$ev\"}"
done

echo "# 5.6.7.8 sent garbage"
j -XPOST "http://$api/v1/events" -d '{"addr":"5.6.7.8:26656","event":"misbehaved","reason":"bad frame"}'

echo "# where things stand"
j "http://$api/v1/book/1.2.3.4:26656"
j "http://$api/v1/bans"
j "http://$api/v1/status"
