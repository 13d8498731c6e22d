#!/bin/sh
# tools/divert-supervisor against a fake ipfw that logs its arguments: the firewall states it
# sets when sluice starts, stays up, dies, is restarted, and when the supervisor is stopped.
# Usage: divert_supervisor_test.sh PATH/TO/divert-supervisor
set -u
sup=$1
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
cat >"$dir/ipfw" <<'FAKE'
#!/bin/sh
echo "$*" >>"$IPFW_LOG"
FAKE
chmod +x "$dir/ipfw"
echo "add 10000 set 20 divert 8000 ip from any to any" >"$dir/rules"
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
expect_log() {  # name, expected log (lines)
  if [ "$(cat "$IPFW_LOG")" != "$2" ]; then
    fail "$1"
    echo "--- expected"; echo "$2"; echo "--- got"; cat "$IPFW_LOG"
  fi
}
DIVERT="set enable 20 disable 21"
BYPASS="set disable 20 enable 21"

# 1. sluice runs, dies, is restarted twice, then the supervisor gives up: bypass at the end.
export IPFW_LOG="$dir/log1"
: >"$IPFW_LOG"
sh "$sup" --ipfw "$dir/ipfw" --rules "$dir/rules" --ready-delay 0.2 --restart-delay 0.1 \
  --max-restarts 2 -- sh -c 'sleep 0.6; exit 3' 2>"$dir/err1"
status=$?
[ "$status" -eq 1 ] || fail "gives up with status 1 (got $status)"
expect_log "restarts" "-q $dir/rules
$BYPASS
$DIVERT
$BYPASS
$DIVERT
$BYPASS
$DIVERT
$BYPASS"
grep -q "exited with status 3; failing open" "$dir/err1" || fail "says why it failed open"

# 2. sluice dies before it is ready: traffic is never diverted to it.
export IPFW_LOG="$dir/log2"
: >"$IPFW_LOG"
sh "$sup" --ipfw "$dir/ipfw" --ready-delay 0.5 --max-restarts 1 --restart-delay 0.1 -- sh -c 'exit 1' 2>/dev/null
expect_log "never ready" "$BYPASS
$BYPASS
$BYPASS"

# 3. Stopped with SIGTERM while sluice is up: sluice is stopped, the firewall fails open.
for mode in open closed; do
  export IPFW_LOG="$dir/log3$mode"
  : >"$IPFW_LOG"
  sh "$sup" --ipfw "$dir/ipfw" --ready-delay 0.1 --on-exit "$mode" -- sleep 30 2>"$dir/err3" &
  pid=$!
  sleep 1
  kill -TERM "$pid"
  wait "$pid"
  status=$?
  [ "$status" -eq 0 ] || fail "exits 0 on SIGTERM (got $status, $mode)"
  if [ "$mode" = open ]; then last=$BYPASS; else last=$DIVERT; fi
  expect_log "stopped, $mode" "$BYPASS
$DIVERT
$last"
  child=$(sed -n 's/.*started sleep (pid \([0-9]*\)).*/\1/p' "$dir/err3")
  [ -n "$child" ] || fail "names the child it started"
  [ -n "$child" ] && kill -0 "$child" 2>/dev/null && { fail "sluice left running"; kill "$child"; }
done

# 4. Bad arguments are refused before anything touches the firewall.
export IPFW_LOG="$dir/log4"
: >"$IPFW_LOG"
sh "$sup" --ipfw "$dir/ipfw" --divert-set 5 --bypass-set 5 -- true 2>/dev/null && fail "same sets accepted"
sh "$sup" --ipfw "$dir/ipfw" --on-exit maybe -- true 2>/dev/null && fail "bad --on-exit accepted"
[ -s "$IPFW_LOG" ] && fail "ipfw touched on bad arguments"

if [ "$failures" -eq 0 ]; then echo "divert-supervisor: 4 passed, 0 failed"; exit 0; fi
echo "divert-supervisor: $failures failed"
exit 1
