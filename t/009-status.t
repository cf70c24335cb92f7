# phantombuster_status: the queue's status as JSON, computed in Redis by
# the script pbctl status runs too (common/pb_status.c); exact fields and
# types, values for a known state, 503 JSON without Redis.

use Test::Nginx::Socket 'no_plan';
use t::PB;
use t::PBStatus;

t::PBStatus::defaults(config => <<'EOF', request => 'GET /status');
    location = /status {
        phantombuster_status;
        phantombuster_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT db=$TEST_NGINX_STATUS_DB;
    }
EOF

no_shuffle();
run_tests();

__DATA__

=== TEST 1: a queue in a known state: fields, types and values
--- init
t::PBStatus::seed();
t::PB::expect(check => sub {
    my ($block, $body) = @_;
    my $s = t::PBStatus::status_ok($body, $block->name) or return;
    my $n = $block->name;

    Test::More::is($s->{lane}{state}, 'open', "$n - lane open");
    Test::More::is_deeply([map { $s->{counts}{$_} } qw(pending running dead done)],
                          [3, 1, 1, 1], "$n - counts");
    Test::More::is($s->{max_running}, 1, "$n - max_running from the heartbeat");
    my $r = $s->{running}[0];
    Test::More::is_deeply([$r->{id}, $r->{agent}, $r->{container}, $r->{worker}],
                          ['r1', 'A', 'c1', 'w1'], "$n - the running job");
    Test::More::ok($r->{elapsed_ms} >= 4000 && $r->{elapsed_ms} < 9000,
                   "$n - elapsed since its claim");
    Test::More::is($r->{remaining_ms}, 10000 - $r->{elapsed_ms},
                   "$n - what is left of agent A's average");
    Test::More::is_deeply([map { "$_->{position}:$_->{id}" } @{ $s->{pending} }],
                          ['1:p1', '2:p2', '3:p3'], "$n - pending in launch order");
    my @p = @{ $s->{pending} };
    Test::More::is_deeply([map { $_->{starts_in_ms} } @p],
                          [$r->{remaining_ms}, $p[0]{done_in_ms}, $p[1]{done_in_ms}],
                          "$n - each starts when the one before is done");
    Test::More::is_deeply([map { $_->{done_in_ms} - $_->{starts_in_ms} } @p],
                          [10000, 10000, 8000],
                          "$n - A's average, then B takes all agents' average");
    Test::More::is($s->{eta}{queue_done_in_ms}, $p[2]{done_in_ms},
                   "$n - the queue is done with its last job");
    Test::More::is($s->{dead}[0]{error}, 'HTTP 400: bad "argument"',
                   "$n - dead letter with its reason");
    Test::More::is_deeply([@{ $s->{recent}[0] }{qw(id outcome exit_message duration_ms)}],
                          ['f1', 'failed', 'agent crashed', 15000],
                          "$n - recent completion");
    Test::More::ok($s->{webhooks}{last_age_ms} >= 5000, "$n - last webhook age");
    Test::More::is_deeply([map { $_->{code} } @{ $s->{alerts} }], ['dead_letters'],
                          "$n - alerts");
});
--- error_code: 200
--- response_headers
Content-Type: application/json
Cache-Control: no-store
--- no_error_log
[error]
[alert]
[crit]



=== TEST 2: an empty queue: empty lists are [], no worker is an alert
--- init
t::PBStatus::flush();
t::PB::expect(check => sub {
    my ($block, $body) = @_;
    my $s = t::PBStatus::status_ok($body, $block->name) or return;

    Test::More::like($body, qr/"running":\[\],"pending":\[\],"dead":\[\],"recent":\[\]/,
                     $block->name . " - lists, not objects");
    Test::More::is($s->{eta}{queue_done_in_ms}, 0, $block->name . " - nothing to do");
    Test::More::is($s->{alerts}[0]{code}, 'no_worker', $block->name . " - no worker");
});
--- error_code: 200
--- no_error_log
[error]



=== TEST 3: paused, and the lane closed by a 429: no ETA, both said
--- init
t::PBStatus::seed();
t::PBStatus::redis('SET', 'phantombuster:control:paused', '{"by":"ops","at":"now"}');
t::PBStatus::redis('SET', 'phantombuster:lane:closed_until',
                   t::PBStatus::now_ms() + 30000, 'PX', 30000);
t::PB::expect(check => sub {
    my ($block, $body) = @_;
    my $s = t::PBStatus::status_ok($body, $block->name) or return;
    my $n = $block->name;

    Test::More::is($s->{lane}{state}, 'paused', "$n - paused wins");
    Test::More::is($s->{lane}{paused}{by}, 'ops', "$n - who paused");
    Test::More::ok($s->{lane}{closed_ms} > 25000 && $s->{lane}{closed_until} > 0,
                   "$n - the closed lane is still reported");
    Test::More::ok(!defined $s->{eta}{queue_done_in_ms}
                   && !defined $s->{pending}[0]{starts_in_ms},
                   "$n - no ETA while paused");
    Test::More::is($s->{eta}{blocked}, 'paused', "$n - and why");
    Test::More::ok((grep { $_->{code} eq 'paused' } @{ $s->{alerts} }),
                   "$n - alert");
});
--- error_code: 200
--- no_error_log
[error]



=== TEST 4: a run past its deadline is stuck
--- init
t::PBStatus::seed();
t::PBStatus::redis('ZADD', 'phantombuster:jobs:running',
                   t::PBStatus::now_ms() - 120000, 'r1');
t::PB::expect(check => sub {
    my ($block, $body) = @_;
    my $s = t::PBStatus::status_ok($body, $block->name) or return;

    Test::More::ok($s->{running}[0]{stuck} && $s->{running}[0]{overdue_ms} >= 120000,
                   $block->name . " - stuck, and by how much");
    Test::More::like(join(',', map { $_->{message} } @{ $s->{alerts} }),
                     qr/run r1 is 12\d s past its deadline/,
                     $block->name . " - alert");
});
--- error_code: 200
--- no_error_log
[error]



=== TEST 5: the script cache was flushed: EVAL once, then EVALSHA again
--- init
t::PBStatus::seed();
t::PBStatus::redis('SCRIPT', 'FLUSH');
--- request eval
["GET /status", "GET /status"]
--- error_code eval
[200, 200]
--- response_body_like eval
[qr/^\{"now":\d+,"lane":/, qr/^\{"now":\d+,"lane":/]
--- no_error_log
[error]



=== TEST 6: the webhook queue named by phantombuster_queue
--- init
t::PBStatus::flush();
t::PBStatus::redis('LPUSH', 'pbtest:status-q', 'a', 'b');
t::PBStatus::redis('LPUSH', 'pbtest:status-q:invalid', 'x');
--- config
    location = /status {
        phantombuster_status;
        phantombuster_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT db=$TEST_NGINX_STATUS_DB;
        phantombuster_queue pbtest:status-q;
    }
--- error_code: 200
--- response_body_like: "webhooks":\{[^}]*"queued":2
--- no_error_log
[error]



=== TEST 7: Redis down: 503 JSON at once
--- config
    location = /status {
        phantombuster_status;
        phantombuster_redis 127.0.0.1:1;
    }
--- error_code: 503
--- response_headers
Content-Type: application/json
Retry-After: 1
--- response_body chomp
{"error":"queue unavailable"}
--- no_error_log
[alert]
[crit]



=== TEST 8: Redis that does not answer: 503 JSON after phantombuster_redis_timeout
--- config
    location = /status {
        phantombuster_status;
        phantombuster_redis 127.0.0.1:$TEST_NGINX_EXTRA_PORT;
        phantombuster_redis_timeout 300ms;
    }
--- tcp_listen: $TEST_NGINX_EXTRA_PORT
--- tcp_reply_delay: 3s
--- tcp_reply: +OK
--- error_code: 503
--- response_body chomp
{"error":"queue unavailable"}
--- error_log
did not answer within 300 ms
--- no_error_log
[alert]
[crit]



=== TEST 9: GET and HEAD only
--- request eval
["POST /status\n{}", "HEAD /status"]
--- error_code eval
[405, 200]
--- response_headers_like eval
["Allow: GET, HEAD", "Content-Type: application/json"]
--- response_body eval
["{\"error\":\"method not allowed\"}", ""]
--- no_error_log
[error]



=== TEST 10: the status page is shipped: served as static files
--- config
    location /pb/ {
        alias $TEST_NGINX_PB_ROOT/html/phantombuster/;
    }
--- request eval
["GET /pb/", "GET /pb/status.js"]
--- error_code eval
[200, 200]
--- response_body_like eval
[qr{<title>PhantomBuster queue</title>.*data-status-url="status.json"}s,
 qr{setTimeout\(poll, POLL_MS\)}]
--- no_error_log
[error]



=== TEST 11: phantombuster_status shares no location with another handler
--- config
    location = /status {
        proxy_pass http://127.0.0.1:1;
        phantombuster_status;
    }
--- must_die
--- error_log
conflicts with another content handler in this location



=== TEST 12: a Redis error reply to the status script (WRONGTYPE) is a 503
--- init
t::PBStatus::flush();
t::PBStatus::redis('SET', 'pbtest:status-q', 'not a list');
--- config
    location = /status {
        phantombuster_status;
        phantombuster_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT db=$TEST_NGINX_STATUS_DB;
        phantombuster_queue pbtest:status-q;
    }
--- error_code: 503
--- response_headers
Retry-After: 1
--- response_body chomp
{"error":"queue unavailable"}
--- error_log eval
qr/EVAL(SHA)? failed: .*WRONGTYPE/
--- no_error_log
[alert]
[crit]



=== TEST 13: a queue name too long for the status keys is a 500, logged
--- config eval
"    location = /status {
        phantombuster_status;
        phantombuster_redis 127.0.0.1:\$TEST_NGINX_REDIS_PORT;
        phantombuster_queue pbtest:" . ("q" x 600) . ";
    }"
--- error_code: 500
--- error_log
is too long for the status
--- no_error_log
[alert]
[crit]
