# phantombuster_metrics: Prometheus text.  nginx's counters (webhooks by
# result, the push latency histogram, Redis failures) from shared memory;
# the worker's side from Redis through common/pb_status.c; the nginx part
# still served, with phantombuster_redis_up 0, when Redis is down.

use Test::Nginx::Socket 'no_plan';
use t::PB;
use t::PBStatus;

# Every sample line is "name{label="value"} number" and belongs to a
# family announced by # HELP and # TYPE before it.
sub main::prometheus_ok {
    my ($body, $name) = @_;
    my (%typed, @bad);

    for my $line (split /\n/, $body) {
        if ($line =~ /^# (HELP|TYPE) ([a-z_]+) \S/) {
            $typed{$2}++ if $1 eq 'TYPE';
            next;
        }

        my ($metric) = $line =~ /^([a-z_]+)(?:\{[a-z_]+="(?:[^"\\\n]|\\.)*"\})? -?\d+(?:\.\d+)?$/;
        my $family = defined $metric
                     ? $metric =~ s/_(?:bucket|sum|count)$//r : undef;

        push @bad, $line
            unless defined $metric && ($typed{$metric} || $typed{$family});
    }

    Test::More::is(join("\n", @bad), '', "$name - valid Prometheus text");
}

t::PBStatus::defaults(config => <<'EOF');
    location = /metrics {
        phantombuster_metrics;
        phantombuster_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT db=$TEST_NGINX_STATUS_DB;
    }
EOF

no_shuffle();
run_tests();

__DATA__

=== TEST 1: the worker's side, from Redis
--- init
t::PBStatus::seed();
t::PB::expect(check => sub {
    my ($block, $body) = @_;
    main::prometheus_ok($body, $block->name);
    my @want = (
        'phantombuster_redis_up 1',
        'phantombuster_jobs{state="pending"} 3',
        'phantombuster_jobs{state="running"} 1',
        'phantombuster_jobs{state="dead"} 1',
        'phantombuster_webhook_queue_length 0',
        'phantombuster_launches_total 5',
        'phantombuster_launch_rate_limited_total 2',
        'phantombuster_launch_refusals_total 1',
        'phantombuster_runs_completed_total{outcome="failed"} 1',
        'phantombuster_run_failures_total{exit_message="agent crashed"} 1',
        'phantombuster_polls_total 0',
        'phantombuster_timeouts_total 0',
        'phantombuster_launches_in_doubt_total 0',
        'phantombuster_workers_alive 1',
        'phantombuster_paused 0',
        'phantombuster_run_duration_average_seconds{agent="A"} 10',
    );
    for my $line (@want) {
        Test::More::ok(index($body, "\n$line\n") >= 0, $block->name . " - $line");
    }
    Test::More::like($body, qr/\nphantombuster_last_webhook_age_seconds 5\.\d{3}\n/,
                     $block->name . ' - last webhook age');
    Test::More::like($body, qr/\nphantombuster_oldest_pending_age_seconds 3\.\d{3}\n/,
                     $block->name . ' - oldest pending job age');
});
--- request
GET /metrics
--- error_code: 200
--- response_headers
Content-Type: text/plain; version=0.0.4; charset=utf-8
--- no_error_log
[error]
[alert]
[crit]



=== TEST 2: nginx's side: webhooks by result and the push latency
--- init
t::PBStatus::flush();
t::PB::expect(len => [1, 1, 1, 1, 1], check => sub {
    my ($block, $body) = @_;
    main::prometheus_ok($body, $block->name);
    for my $line ('phantombuster_webhook_requests_total{result="queued"} 1',
                  'phantombuster_webhook_requests_total{result="duplicate"} 1',
                  'phantombuster_webhook_requests_total{result="invalid_secret"} 1',
                  'phantombuster_webhook_requests_total{result="invalid_payload"} 1',
                  'phantombuster_webhook_requests_total{result="queue_unavailable"} 0',
                  'phantombuster_redis_push_duration_seconds_bucket{le="+Inf"} 2',
                  'phantombuster_redis_push_duration_seconds_count 2',
                  'phantombuster_redis_errors_total{kind="timeout"} 0')
    {
        Test::More::ok(index($body, "\n$line\n") >= 0, $block->name . " - $line");
    }
    my @b = $body =~ /_bucket\{le="[^"]+"\} (\d+)\n/g;
    Test::More::is_deeply([sort { $a <=> $b } @b], \@b,
                          $block->name . ' - buckets are cumulative');
});
--- config
    location = /hook {
        phantombuster_webhook;
        phantombuster_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT;
        phantombuster_secret s3cret;
        phantombuster_queue pbtest:webhooks;
    }
    location = /metrics {
        phantombuster_metrics;
        phantombuster_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT db=$TEST_NGINX_STATUS_DB;
    }
--- request eval
["POST /hook?secret=s3cret\n" . t::PB::payload(),
 "POST /hook?secret=s3cret\n" . t::PB::payload(),
 "POST /hook?secret=wrong\n" . t::PB::payload(),
 "POST /hook?secret=s3cret\n{}",
 "GET /metrics"]
--- error_code eval
[202, 200, 403, 400, 200]
--- no_error_log
[alert]
[crit]



=== TEST 3: Redis down: the nginx part, and redis_up 0
--- config
    location = /metrics {
        phantombuster_metrics;
        phantombuster_redis 127.0.0.1:1;
    }
--- request
GET /metrics
--- error_code: 200
--- response_body_like eval
qr/\nphantombuster_redis_errors_total\{kind="connect_failed"\} [1-9]\d*\n.*\nphantombuster_redis_up 0\n\z/s
--- no_error_log
[alert]
[crit]



=== TEST 4: Redis does not answer: the nginx part after the timeout
--- config
    location = /metrics {
        phantombuster_metrics;
        phantombuster_redis 127.0.0.1:$TEST_NGINX_EXTRA_PORT;
        phantombuster_redis_timeout 300ms;
    }
--- tcp_listen: $TEST_NGINX_EXTRA_PORT
--- tcp_reply_delay: 3s
--- tcp_reply: +OK
--- request
GET /metrics
--- error_code: 200
--- response_body_like eval
qr/\nphantombuster_redis_errors_total\{kind="timeout"\} 1\n.*\nphantombuster_redis_up 0\n\z/s
--- no_error_log
[alert]
[crit]



=== TEST 5: a webhook refused before its body is read is counted too
--- config
    location = /hook {
        phantombuster_webhook;
        phantombuster_secret off;
        phantombuster_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT;
        phantombuster_queue pbtest:webhooks;
    }
    location = /metrics {
        phantombuster_metrics;
        phantombuster_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT db=$TEST_NGINX_STATUS_DB;
    }
--- request eval
["GET /hook", "GET /metrics"]
--- error_code eval
[405, 200]
--- response_body_like eval
[qr/method not allowed/,
 qr/\nphantombuster_webhook_requests_total\{result="method_not_allowed"\} 1\n/]
--- no_error_log
[alert]



=== TEST 6: GET and HEAD only
--- request
DELETE /metrics
--- error_code: 405
--- response_headers
Allow: GET, HEAD
