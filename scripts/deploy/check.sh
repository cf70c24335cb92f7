#!/usr/bin/env bash
# Checks the deployment files in this directory against the real binaries:
#
#   nginx  the http and location snippets load with the built module
#          (nginx -t), then a live nginx on 127.0.0.1:8499 with them:
#          a valid webhook is queued (202), a wrong secret is refused,
#          a refused address gets 403, a flood gets 429 from limit_req,
#          and neither the access log nor the error log holds the secret
#   systemd   systemd-analyze verify on the unit (when systemd-analyze
#             exists)
#   supervisor  supervisord parses the program section (when installed)
#
#   scripts/deploy/check.sh        prints "N passed, N failed"
#
# Uses the test Redis (scripts/redis.sh, PB_TEST_REDIS_PORT, default
# 6399) with the queue pbdeploy:webhooks.
set -uo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
here=scripts/deploy
so=${PB_MODULE_SO:-$root/build/nginx/ngx_http_phantombuster_module.so}
port=8499
redis_port=${PB_TEST_REDIS_PORT:-6399}
queue=pbdeploy:webhooks
tmp=$(mktemp -d /tmp/pb-deploy-check.XXXXXX)
secret=deploy-$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')
nginx_pid=''
passed=0 failed=0

ok()   { passed=$((passed + 1)); echo "ok - $*"; }
nok()  { failed=$((failed + 1)); echo "not ok - $*"; }
check() { local what=$1; shift; if "$@"; then ok "$what"; else nok "$what"; fi; }

clear_keys() {
    redis-cli -p "$redis_port" --scan --pattern 'pbdeploy:*' 2>/dev/null \
        | while read -r k; do redis-cli -p "$redis_port" del "$k"; done \
        >/dev/null
}

cleanup() {
    [ -n "$nginx_pid" ] && kill -QUIT "$nginx_pid" 2>/dev/null \
        && wait "$nginx_pid" 2>/dev/null
    clear_keys
    [ -n "${KEEP:-}" ] && echo "kept $tmp" || rm -rf "$tmp"
}
trap cleanup EXIT

# --- nginx -----------------------------------------------------------------

if [ ! -f "$so" ]; then
    nok "module built ($so missing: run make module)"
else
    scripts/redis.sh start "$redis_port" >/dev/null || nok "redis"
    clear_keys

    mkdir -p "$tmp/logs" "$tmp/conf"
    printf '%s\n' "$secret" >"$tmp/conf/webhook-secret"
    chmod 600 "$tmp/conf/webhook-secret"
    cp "$here/nginx/phantombuster-allow.conf" "$tmp/conf/"
    sed -e "s|/etc/nginx/phantombuster-allow.conf|$tmp/conf/phantombuster-allow.conf|" \
        "$here/nginx/phantombuster-http.conf" >"$tmp/conf/phantombuster-http.conf"
    # the location snippet as shipped, with this machine's paths and ports
    sed -e "s|/var/log/nginx/|$tmp/logs/|" \
        -e "s|/etc/phantombuster/webhook-secret|$tmp/conf/webhook-secret|" \
        -e "s|127.0.0.1:6379|127.0.0.1:$redis_port|" \
        -e "s|phantombuster:webhooks|$queue|" \
        "$here/nginx/phantombuster-location.conf" \
        >"$tmp/conf/phantombuster-webhook.conf"
    cat >"$tmp/conf/nginx.conf" <<CONF
load_module $so;
worker_processes 1;
daemon off;
pid $tmp/logs/nginx.pid;
error_log $tmp/logs/error.log;
events { worker_connections 64; }
http {
    access_log off;
    client_body_temp_path $tmp/body;
    include $tmp/conf/phantombuster-http.conf;
    server {
        listen 127.0.0.1:$port;
        include $tmp/conf/phantombuster-webhook.conf;
    }
}
CONF

    check "nginx -t accepts the snippets" \
        nginx -q -t -p "$tmp" -c "$tmp/conf/nginx.conf" -e "$tmp/logs/error.log"

    nginx -p "$tmp" -c "$tmp/conf/nginx.conf" -e "$tmp/logs/error.log" &
    nginx_pid=$!
    for _ in $(seq 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
        sleep 0.05
    done

    url=http://127.0.0.1:$port/phantombuster/webhook
    body=$(cat t/data/webhook-payload.json)
    post() {  # post URL [curl args]: prints the status
        local u=$1; shift
        curl -s -o /dev/null -w '%{http_code}' -X POST \
            -H 'Content-Type: application/json' --data-binary "$body" \
            "$@" "$u"
    }

    check "valid webhook answered 202" \
        test "$(post "$url?secret=$secret")" = 202
    check "webhook queued in Redis" \
        test "$(redis-cli -p "$redis_port" llen "$queue")" = 1
    code=$(post "$url?secret=wrong-$secret")
    check "wrong secret refused by the module ($code)" \
        test "$code" = 401 -o "$code" = 403
    code=$(post "$url?secret=$secret" --interface 127.0.0.2)
    check "address outside the allowlist refused by nginx ($code)" \
        test "$code" = 403

    codes=$(for _ in $(seq 40); do post "$url?secret=wrong"; echo; done)
    check "a flood meets limit_req (429)" grep -q 429 <<<"$codes"

    kill -QUIT "$nginx_pid"; wait "$nginx_pid" 2>/dev/null; nginx_pid=''
    acc=$tmp/logs/phantombuster-access.log
    check "access log written" test -s "$acc"
    check "access log has neither the query string nor the secret" \
        bash -c "! grep -q -e '?' -e '$secret' '$acc'"
    check "access log has the module's result and containerId" \
        grep -q 'result="queued" container=7583362109412873' "$acc"
    check "access log has the 429s with no module result" \
        grep -q '" 429 .* result="-" container=-' "$acc"
    check "error log holds no secret" \
        bash -c "! grep -q '$secret' '$tmp/logs/error.log'"
fi

# --- systemd ---------------------------------------------------------------

if command -v systemd-analyze >/dev/null; then
    cp "$here/systemd/pb-worker@.service" "$tmp/pb-worker@.service"
    # verify needs the ExecStart binary to exist
    sed -i "s|/usr/local/bin/pb-worker|$root/build/worker/pb-worker|" \
        "$tmp/pb-worker@.service"
    # any line (even "..., ignoring") is a mistake in the unit
    out=$(systemd-analyze verify "$tmp/pb-worker@.service" 2>&1)
    check "systemd-analyze verify pb-worker@.service" test -z "$out"
    [ -z "$out" ] || echo "$out" | sed 's/^/  /'
fi

# --- supervisord -------------------------------------------------------------

if command -v supervisord >/dev/null; then
    # as shipped, but as a user that exists here
    sed -e 's/^user=pb-worker/user=root/' -e "s|/var/log/pb-worker/|$tmp/|" \
        "$here/supervisor/pb-worker.conf" \
        >"$tmp/pb-worker.conf"
    cat >"$tmp/supervisord.conf" <<CONF
[supervisord]
logfile=$tmp/supervisord.log
pidfile=$tmp/supervisord.pid
[include]
files = $tmp/pb-worker.conf
CONF
    out=$(python3 - "$tmp/supervisord.conf" 2>&1 <<'PY'
import sys
sys.path.insert(0, "/usr/lib/python3/dist-packages")
from supervisor.options import ServerOptions
o = ServerOptions()
o.realize(["-c", sys.argv[1]])
g = [g for g in o.process_group_configs if g.name == "pb-worker"][0]
p = g.process_configs[0]
assert p.stopsignal == 15 and p.autorestart, p
print("pb-worker: %s, env %s" % (p.command, sorted(p.environment)))
PY
)
    check "supervisord parses pb-worker.conf" grep -q '^pb-worker:' <<<"$out"
    echo "$out" | sed 's/^/  /'
fi

echo "deploy: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
