# What the module stores in Redis: envelope fields, FIFO order, payloads
# kept byte for byte, dedupe (sequential and concurrent), max_queue, the
# several ways a body can arrive, secrets, db=N and the variables.

use Test::Nginx::Socket 'no_plan';
use t::PB;

our $Config = <<'_EOC_';
    location = /hook {
        phantombuster_webhook;
        phantombuster_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT;
        phantombuster_secret s3cret;
        phantombuster_queue pbtest:webhooks;
        add_header X-PB-Result $phantombuster_result always;
        add_header X-PB-Container $phantombuster_container_id always;
    }
_EOC_

# two webhook locations, each with its queue and secret
our $TwoQueues = <<'_EOC_';
    location = /a {
        phantombuster_webhook;
        phantombuster_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT;
        phantombuster_secret s3cret;
        phantombuster_queue pbtest:a;
    }
    location = /b {
        phantombuster_webhook;
        phantombuster_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT;
        phantombuster_secret other;
        phantombuster_queue pbtest:b;
    }
_EOC_

add_block_preprocessor(sub {
    my $block = shift;

    $block->set_value('config', $Config) unless defined $block->config;
    $block->set_value('no_error_log', "[error]\n[alert]\n[crit]\n")
        unless defined $block->no_error_log;
});

no_shuffle();
run_tests();

__DATA__

=== TEST 1: three webhooks come out FIFO with complete envelopes
--- init
t::PB::expect(len => [1, 2, 3], check => sub {
    my ($block, $body) = @_;
    my @env = t::PB::envelopes('pbtest:webhooks');
    Test::More::is(join(',', map { $_->{payload}{containerId} } @env),
                   '101,102,103', 'consumer order is delivery order');
    my %ids = map { $_->{id} => 1 } @env;
    Test::More::is(scalar keys %ids, 3, 'three distinct request ids');
    for my $e (@env) {
        Test::More::like($e->{id}, qr/^[0-9a-f]{32}$/, 'id is $request_id');
        Test::More::is($e->{queue}, 'pbtest:webhooks', 'queue field');
        Test::More::like($e->{received_at}, qr/^\d{13}$/, 'received_at ms');
        Test::More::is(join(',', sort keys %$e),
                       'id,payload,queue,received_at', 'envelope fields');
    }
    Test::More::ok($env[0]{received_at} <= $env[2]{received_at},
                   'received_at grows');
    my ($id) = $body =~ /"id":"([0-9a-f]{32})"/;
    Test::More::is($env[2]{id}, $id, 'the 202 names the stored id');
});
--- request eval
[map { "POST /hook?secret=s3cret\n" . t::PB::payload(containerId => $_) }
     101 .. 103]
--- error_code eval
[202, 202, 202]
--- response_body_like eval
[qr/^\{"status":"queued","id":"[0-9a-f]{32}"\}$/,
 qr/^\{"status":"queued","id":"[0-9a-f]{32}"\}$/,
 qr/^\{"status":"queued","id":"[0-9a-f]{32}"\}$/]



=== TEST 2: the payload is embedded byte for byte (spacing, escapes, extras)
--- init
t::PB::expect(len => 1, check => sub {
    my @raw = t::PB::redis_list('pbtest:webhooks');
    my $raw = $t::PB::Stash{raw};
    Test::More::ok(index($raw[0], qq["payload":$raw}]) > 0,
                   'payload bytes verbatim inside the envelope');
    Test::More::is(t::PB::redis('EXISTS',
                   'pbtest:webhooks:seen:run-42.a_b:c'), '(integer) 1',
                   'seen marker uses the string containerId');
});
--- request eval
$t::PB::Stash{raw} =
    qq[{"containerId" : "run-42.a_b:c", "agentId":"agent-7",\n]
    . qq[ "exitCode":87, "exitMessage":"no log timeout",]
    . qq[ "extra":{"list":[1,2.50,"\\u00e9"],"nil":null},]
    . qq[ "emoji":"\\ud83d\\ude00"}];
"POST /hook?secret=s3cret\n" . $t::PB::Stash{raw}
--- error_code: 202
--- response_headers
X-PB-Result: queued
X-PB-Container: run-42.a_b:c



=== TEST 3: a second delivery of one containerId is a duplicate, not pushed
--- init
t::PB::expect(len => [1, 1, 2], check => sub {
    my $ttl = t::PB::redis('PTTL', 'pbtest:webhooks:seen:555');
    $ttl =~ s/^\(integer\) //;
    Test::More::ok($ttl > 86_000_000 && $ttl <= 86_400_000,
                   "default dedupe window is 24h ($ttl ms)");
    my @env = t::PB::envelopes('pbtest:webhooks');
    Test::More::is($env[0]{payload}{containerId}, 555, 'first one kept');
    Test::More::is(t::PB::redis('--raw', 'GET',
                   'pbtest:webhooks:seen:555'), $env[0]{id},
                   'marker holds the first request id');
});
--- request eval
["POST /hook?secret=s3cret\n" . t::PB::payload(containerId => 555),
 "POST /hook?secret=s3cret\n" . t::PB::payload(containerId => 555,
                                                exitCode => 1),
 "POST /hook?secret=s3cret\n" . t::PB::payload(containerId => 556)]
--- error_code eval
[202, 200, 202]
--- response_body_like eval
[qr/queued/, qr/^\{"status":"duplicate"\}$/, qr/queued/]



=== TEST 4: phantombuster_dedupe sets the marker's window
--- config
    location = /hook {
        phantombuster_webhook;
        phantombuster_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT;
        phantombuster_secret s3cret;
        phantombuster_queue pbtest:webhooks;
        phantombuster_dedupe 90s;
    }
--- init
t::PB::expect(len => [1, 1], check => sub {
    my $ttl = t::PB::redis('PTTL', 'pbtest:webhooks:seen:77');
    $ttl =~ s/^\(integer\) //;
    Test::More::ok($ttl > 80_000 && $ttl <= 90_000, "90s window ($ttl ms)");
});
--- request eval
["POST /hook?secret=s3cret\n" . t::PB::payload(containerId => 77),
 "POST /hook?secret=s3cret\n" . t::PB::payload(containerId => 77)]
--- error_code eval
[202, 200]



=== TEST 5: phantombuster_dedupe off pushes every delivery
--- config
    location = /hook {
        phantombuster_webhook;
        phantombuster_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT;
        phantombuster_secret s3cret;
        phantombuster_queue pbtest:webhooks;
        phantombuster_dedupe off;
    }
--- init
t::PB::expect(len => [1, 2], check => sub {
    Test::More::is(t::PB::redis('EXISTS', 'pbtest:webhooks:seen:88'),
                   '(integer) 0', 'no marker when dedupe is off');
});
--- request eval
["POST /hook?secret=s3cret\n" . t::PB::payload(containerId => 88),
 "POST /hook?secret=s3cret\n" . t::PB::payload(containerId => 88)]
--- error_code eval
[202, 202]



=== TEST 6: concurrent deliveries of one containerId push exactly once
--- init
my @res = t::PB::concurrent('/hook?secret=s3cret',
    [map { t::PB::payload(containerId => 999, runDuration => $_) } 1 .. 20]);
$t::PB::Stash{codes} = join ',', sort map { $_->[0] } @res;
t::PB::expect(len => 1, check => sub {
    Test::More::is($t::PB::Stash{codes}, join(',', ('200') x 19, '202'),
                   'one 202 and nineteen 200 duplicates');
});
--- request eval
"POST /hook?secret=s3cret\n" . t::PB::payload(containerId => 999)
--- error_code: 200
--- response_body chomp
{"status":"duplicate"}



=== TEST 7: 25 concurrent distinct webhooks share the pipelined connection
--- init
my @res = t::PB::concurrent('/hook?secret=s3cret',
    [map { t::PB::payload(containerId => 1000 + $_) } 1 .. 25]);
$t::PB::Stash{codes} = join ',', map { $_->[0] } @res;
$t::PB::Stash{ids} = [map { $_->[1] =~ /"id":"(\w+)"/ ? $1 : '' } @res];
t::PB::expect(len => 26, check => sub {
    Test::More::is($t::PB::Stash{codes}, join(',', ('202') x 25),
                   'all 25 answered 202');
    my @env = t::PB::envelopes('pbtest:webhooks');
    my %stored = map { $_->{id} => $_->{payload}{containerId} } @env;
    my $i = 0;
    for my $id (@{ $t::PB::Stash{ids} }) {
        $i++;
        Test::More::is($stored{$id}, 1000 + $i, "202 #$i is stored");
    }
});
--- request eval
"POST /hook?secret=s3cret\n" . t::PB::payload(containerId => 1)
--- error_code: 202



=== TEST 8: max_queue answers 503 + Retry-After once the list is full
--- config
    location = /hook {
        phantombuster_webhook;
        phantombuster_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT;
        phantombuster_secret s3cret;
        phantombuster_queue pbtest:webhooks;
        phantombuster_max_queue 2;
        add_header X-PB-Result $phantombuster_result always;
    }
--- init
t::PB::expect(len => [1, 2, 2, 2], check => sub {
    Test::More::is(t::PB::redis('EXISTS', 'pbtest:webhooks:seen:3'),
                   '(integer) 0', 'a refused webhook leaves no marker');
});
--- request eval
[map { "POST /hook?secret=s3cret\n" . t::PB::payload(containerId => $_) }
     1, 2, 3, 1]
--- error_code eval
[202, 202, 503, 200]
--- response_body_like eval
[qr/queued/, qr/queued/, qr/^\{"error":"queue full"\}$/,
 qr/^\{"status":"duplicate"\}$/]



=== TEST 9: the 503 for a full queue carries Retry-After
--- config
    location = /hook {
        phantombuster_webhook;
        phantombuster_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT;
        phantombuster_secret s3cret;
        phantombuster_queue pbtest:webhooks;
        phantombuster_max_queue 1;
        add_header X-PB-Result $phantombuster_result always;
    }
--- init
t::PB::redis('LPUSH', 'pbtest:webhooks', 'older');
t::PB::expect(len => 1);
--- request eval
"POST /hook?secret=s3cret\n" . t::PB::payload()
--- error_code: 503
--- response_headers
Retry-After: 1
Content-Type: application/json
X-PB-Result: queue full
--- response_body chomp
{"error":"queue full"}



=== TEST 10: the secret in X-Webhook-Secret is accepted
--- init
t::PB::expect(len => 1);
--- request eval
"POST /hook\n" . t::PB::payload()
--- more_headers
X-Webhook-Secret: s3cret
--- error_code: 202



=== TEST 11: a percent-encoded secret argument is decoded before comparing
--- config
    location = /hook {
        phantombuster_webhook;
        phantombuster_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT;
        phantombuster_secret "s3 cr&t/é";
        phantombuster_queue pbtest:webhooks;
    }
--- init
t::PB::expect(len => [1, 1]);
--- request eval
["POST /hook?x=1&secret=s3%20cr%26t%2F%C3%A9\n" . t::PB::payload(),
 "POST /hook?secret=s3%20cr\n" . t::PB::payload()]
--- error_code eval
[202, 403]



=== TEST 12: phantombuster_secret_file, trailing newline ignored
--- config
    location = /hook {
        phantombuster_webhook;
        phantombuster_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT;
        phantombuster_secret_file $TEST_NGINX_PB_ROOT/t/data/secret.txt;
        phantombuster_queue pbtest:webhooks;
    }
--- init
t::PB::expect(len => [1, 1]);
--- request eval
["POST /hook?secret=from-a-file\n" . t::PB::payload(),
 "POST /hook?secret=from-a-fil\n" . t::PB::payload()]
--- error_code eval
[202, 403]



=== TEST 13: phantombuster_secret off needs no secret
--- config
    location = /hook {
        phantombuster_webhook;
        phantombuster_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT;
        phantombuster_secret off;
        phantombuster_queue pbtest:webhooks;
    }
--- init
t::PB::expect(len => 1);
--- request eval
"POST /hook\n" . t::PB::payload()
--- error_code: 202



=== TEST 14: settings inherited from http{} and server{}, db=N honoured
--- http_config
    phantombuster_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT db=3;
    phantombuster_secret s3cret;
--- config
    phantombuster_queue pbtest:inherited;
    location = /hook {
        phantombuster_webhook;
    }
--- init
t::PB::expect(len => 1, db => 3, queue => 'pbtest:inherited',
              check => sub {
    Test::More::is(t::PB::redis('LLEN', 'pbtest:inherited'),
                   '(integer) 0', 'nothing in db 0');
    my @env = t::PB::envelopes('pbtest:inherited', 3);
    Test::More::is($env[0]{queue}, 'pbtest:inherited', 'queue name');
});
--- request eval
"POST /hook?secret=s3cret\n" . t::PB::payload()
--- error_code: 202



=== TEST 15: a body spilled to a temporary file is read from it
--- config
    location = /hook {
        phantombuster_webhook;
        phantombuster_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT;
        phantombuster_secret s3cret;
        phantombuster_queue pbtest:webhooks;
        client_body_buffer_size 1k;
    }
--- init
t::PB::expect(len => 1, check => sub {
    my @env = t::PB::envelopes('pbtest:webhooks');
    Test::More::is(length $env[0]{payload}{resultObject}, 20000,
                   'the whole 20 kB field is there');
});
--- request eval
"POST /hook?secret=s3cret\n" . t::PB::payload(resultObject => 'r' x 20000)
--- error_code: 202
--- error_log
a client request body is buffered to a temporary file
--- no_error_log
[error]
[alert]



=== TEST 16: a chunked body in several chunks and writes
--- init
t::PB::expect(len => 1, check => sub {
    my @env = t::PB::envelopes('pbtest:webhooks');
    Test::More::is_deeply($env[0]{payload},
                          {%{ t::PB::sample() }, containerId => 31337},
                          'payload reassembled');
});
--- raw_request eval
my $b = t::PB::payload(containerId => 31337);
my @c = (substr($b, 0, 10), substr($b, 10, 100), substr($b, 110));
["POST /hook?secret=s3cret HTTP/1.1\r\nHost: localhost\r\n"
 . "Connection: close\r\nTransfer-Encoding: chunked\r\n\r\n",
 (map { sprintf("%x\r\n%s\r\n", length $_, $_) } @c), "0\r\n\r\n"]
--- error_code: 202



=== TEST 17: a body that arrives in several writes (several buffers)
--- config
    location = /hook {
        phantombuster_webhook;
        phantombuster_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT;
        phantombuster_secret s3cret;
        phantombuster_queue pbtest:webhooks;
        client_body_buffer_size 64k;
    }
--- init
t::PB::expect(len => 1, check => sub {
    my @env = t::PB::envelopes('pbtest:webhooks');
    Test::More::is($env[0]{payload}{containerId}, 4242, 'payload intact');
});
--- raw_request eval
my $b = t::PB::payload(containerId => 4242, resultObject => 'y' x 3000);
["POST /hook?secret=s3cret HTTP/1.1\r\nHost: localhost\r\n"
 . "Connection: close\r\nContent-Length: " . length($b) . "\r\n\r\n"
 . substr($b, 0, 100), substr($b, 100, 1000), substr($b, 1100)]
--- error_code: 202



=== TEST 18: keep-alive: several webhooks on one connection
--- init
t::PB::expect(len => 2, check => sub {
    my @env = t::PB::envelopes('pbtest:webhooks');
    Test::More::is(join(',', map { $_->{payload}{containerId} } @env),
                   '61,62', 'order kept');
});
--- pipelined_requests eval
["POST /hook?secret=s3cret\n" . t::PB::payload(containerId => 61),
 "POST /hook?secret=s3cret\n" . t::PB::payload(containerId => 62),
 "POST /hook?secret=s3cret\n" . t::PB::payload(containerId => 62)]
--- error_code eval
[202, 202, 200]



=== TEST 19: EVALSHA falls back to EVAL after SCRIPT FLUSH (private Redis)
--- config
    location = /hook {
        phantombuster_webhook;
        phantombuster_redis 127.0.0.1:$TEST_NGINX_SPARE_REDIS_PORT;
        phantombuster_secret s3cret;
        phantombuster_queue pbtest:webhooks;
        phantombuster_max_queue 100;
    }
--- init
my $port = $t::PB::SpareRedisPort;
t::PB::redis_start($port);
t::PB::redis('-p', $port, 'FLUSHALL');
my @warm = t::PB::concurrent('/hook?secret=s3cret',
                              [t::PB::payload(containerId => 1)]);
Test::More::is($warm[0][0], 202, 'warm-up push loaded the script');
t::PB::redis('-p', $port, 'SCRIPT', 'FLUSH');
t::PB::expect(len => 2, port => $port);
--- request eval
"POST /hook?secret=s3cret\n" . t::PB::payload(containerId => 2)
--- error_code: 202
--- error_log
lost the push script, falling back to EVAL
--- no_error_log
[alert]
[crit]



=== TEST 20: two locations, two queues, one connection
--- config eval
$::TwoQueues
--- init
t::PB::expect(len => [0, 1, 1], queue => 'pbtest:b', check => sub {
    Test::More::is(t::PB::redis('LLEN', 'pbtest:a'), '(integer) 1',
                   'queue a got one');
});
--- request eval
["POST /a?secret=s3cret\n" . t::PB::payload(containerId => 5),
 "POST /b?secret=other\n" . t::PB::payload(containerId => 5),
 "POST /b?secret=s3cret\n" . t::PB::payload(containerId => 6)]
--- error_code eval
[202, 202, 403]



=== TEST 21: a Redis on a unix socket
--- config
    location = /hook {
        phantombuster_webhook;
        phantombuster_redis unix:$TEST_NGINX_PB_UNIX_SOCKET;
        phantombuster_secret s3cret;
        phantombuster_queue pbtest:webhooks;
    }
--- init
t::PB::private_redis('unix');
t::PB::expect(len => 1, port => 'unix', check => sub {
    my @env = t::PB::envelopes('pbtest:webhooks', 0, 'unix');
    Test::More::is($env[0]{payload}{containerId}, 71, 'stored over unix:');
    t::PB::private_redis_stop('unix');
});
--- request eval
"POST /hook?secret=s3cret\n" . t::PB::payload(containerId => 71)
--- error_code: 202
--- no_error_log
[alert]
[crit]



=== TEST 22: password_file: AUTH before anything else
--- config
    location = /hook {
        phantombuster_webhook;
        phantombuster_redis 127.0.0.1:$TEST_NGINX_AUTH_REDIS_PORT
            password_file=$TEST_NGINX_PB_ROOT/t/data/redis-password.txt;
        phantombuster_secret s3cret;
        phantombuster_queue pbtest:webhooks;
    }
    location = /wrong {
        phantombuster_webhook;
        phantombuster_redis 127.0.0.1:$TEST_NGINX_AUTH_REDIS_PORT
            password_file=$TEST_NGINX_PB_ROOT/t/data/wrong-password.txt;
        phantombuster_secret s3cret;
        phantombuster_queue pbtest:webhooks;
    }
--- init
t::PB::private_redis('auth');
t::PB::expect(len => [1, 1, 2], port => 'auth', check => sub {
    my $re = qr/redis "127\.0\.0\.1:\d+" refused AUTH: WRONGPASS/;
    Test::More::cmp_ok(t::PB::log_count($re), '>=', 1,
                       'the refused AUTH is logged');
    Test::More::is(t::PB::log_count(qr/pb-test-password|not-the-password/),
                   0, 'no password in the log');
    t::PB::private_redis_stop('auth');
});
--- request eval
["POST /hook?secret=s3cret\n" . t::PB::payload(containerId => 81),
 "POST /wrong?secret=s3cret\n" . t::PB::payload(containerId => 82),
 "POST /hook?secret=s3cret\n" . t::PB::payload(containerId => 83)]
--- error_code eval
[202, 503, 202]
--- no_error_log
[alert]
[crit]



=== TEST 23: phantombuster_max_queue off sets no limit
--- config
    location = /hook {
        phantombuster_webhook;
        phantombuster_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT;
        phantombuster_secret s3cret;
        phantombuster_queue pbtest:webhooks;
        phantombuster_max_queue off;
    }
--- init
t::PB::redis('LPUSH', 'pbtest:webhooks', ('older') x 50);
t::PB::expect(len => 51);
--- request eval
"POST /hook?secret=s3cret\n" . t::PB::payload()
--- error_code: 202



=== TEST 24: a Redis error reply to the push (WRONGTYPE) is a 503
--- init
t::PB::redis('SET', 'pbtest:webhooks', 'not a list');
t::PB::expect(len => undef, check => sub {
    Test::More::is(t::PB::redis('GET', 'pbtest:webhooks'), '"not a list"',
                   'the key Redis refused to push to is untouched');
});
--- request eval
"POST /hook?secret=s3cret\n" . t::PB::payload()
--- error_code: 503
--- response_headers
Retry-After: 1
X-PB-Result: queue unavailable
--- response_body chomp
{"error":"queue unavailable"}
--- error_log eval
qr/push failed: .*WRONGTYPE/
--- no_error_log
[alert]
[crit]



=== TEST 25: the secret header is found after many other headers
--- init
t::PB::expect(len => 1);
--- request eval
"POST /hook\n" . t::PB::payload()
--- more_headers eval
join('', map { "X-Filler-$_: $_\n" } 1 .. 30) . "X-Webhook-Secret: s3cret\n"
--- error_code: 202



=== TEST 26: a refused webhook logs its reason and no container id
--- request eval
"POST /hook\n" . t::PB::payload()
--- error_code: 401
--- response_headers
X-PB-Result: missing secret
!X-PB-Container
--- response_body chomp
{"error":"missing secret"}



=== TEST 27: the webhooks of one event loop iteration go out as one transaction
--- init
t::PB::redis('CONFIG', 'RESETSTAT');
my @res = t::PB::concurrent('/hook?secret=s3cret',
    [map { t::PB::payload(containerId => 3000 + $_) } 1 .. 30],
    one_iteration => 1);
$t::PB::Stash{codes} = join ',', map { $_->[0] } @res;
$t::PB::Stash{calls} = t::PB::push_calls();
t::PB::expect(len => 31, check => sub {
    Test::More::is($t::PB::Stash{codes}, join(',', ('202') x 30),
                   'all 30 answered 202');
    # one pass of the event loop reads them all, or nearly: a connection
    # nginx reads one pass late makes a second transaction
    Test::More::cmp_ok($t::PB::Stash{calls}, '<=', 2,
                       "thirty pushes, $t::PB::Stash{calls} transaction(s)");
    my %stored = map { $_->{payload}{containerId} => 1 }
                 t::PB::envelopes('pbtest:webhooks');
    Test::More::is(scalar(grep { $stored{3000 + $_} } 1 .. 30), 30,
                   'every one of them is stored');
});
--- request eval
"POST /hook?secret=s3cret\n" . t::PB::payload(containerId => 3100)
--- error_code: 202



=== TEST 28: one batch: duplicates inside it, and the list filling up in it
--- config
    location = /hook {
        phantombuster_webhook;
        phantombuster_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT;
        phantombuster_secret s3cret;
        phantombuster_queue pbtest:webhooks;
        phantombuster_max_queue 5;
    }
--- init
t::PB::redis('LPUSH', 'pbtest:webhooks', '{"id":"older1"}', '{"id":"older2"}');
t::PB::redis('CONFIG', 'RESETSTAT');
my @res = t::PB::concurrent('/hook?secret=s3cret',
    [map { t::PB::payload(containerId => $_) } 41, 42, 41, 43, 44, 45, 42],
    one_iteration => 1);
$t::PB::Stash{res} = \@res;
$t::PB::Stash{calls} = t::PB::push_calls();
t::PB::expect(len => 5, check => sub {
    my %by = (queued => 0, duplicate => 0, full => 0);
    for (@{ $t::PB::Stash{res} }) {
        $by{queued}++ if $_->[0] == 202;
        $by{duplicate}++ if $_->[0] == 200 && $_->[1] =~ /duplicate/;
        $by{full}++ if $_->[0] == 503 && $_->[1] =~ /queue full/;
    }
    Test::More::is_deeply(\%by, {queued => 3, duplicate => 2, full => 2},
                          'three fit, two repeat an earlier one, two find '
                          . 'the list full');
    Test::More::cmp_ok($t::PB::Stash{calls}, '<=', 2,
                       "$t::PB::Stash{calls} script call(s)");
    my %marked = map { $_ => t::PB::redis('EXISTS', "pbtest:webhooks:seen:$_") }
                 41 .. 45;
    my @kept = grep { $marked{$_} eq '(integer) 1' } 41 .. 45;
    Test::More::is(scalar @kept, 3, 'only the pushed ones are marked');
    my %stored = map { ref $_->{payload} ? ($_->{payload}{containerId} => 1) : () }
                 t::PB::envelopes('pbtest:webhooks');
    Test::More::is(join(',', sort keys %stored), join(',', sort @kept),
                   'the marked ones are the stored ones');
});
--- request eval
"POST /hook?secret=s3cret\n" . t::PB::payload(containerId => 46)
--- error_code: 503
--- response_body chomp
{"error":"queue full"}



=== TEST 29: one iteration, two queues: one transaction each, nothing mixed
--- config eval
$::TwoQueues
--- init
t::PB::redis('DEL', 'pbtest:a', 'pbtest:b');
t::PB::redis('CONFIG', 'RESETSTAT');
my @res = t::PB::concurrent(['/a?secret=s3cret', '/b?secret=other'],
    [map { t::PB::payload(containerId => 500 + $_) } 1 .. 10],
    one_iteration => 1);
$t::PB::Stash{codes} = join ',', map { $_->[0] } @res;
$t::PB::Stash{calls} = t::PB::push_calls();
t::PB::expect(len => 6, queue => 'pbtest:b', check => sub {
    Test::More::is($t::PB::Stash{codes}, join(',', ('202') x 10),
                   'all 10 answered 202');
    Test::More::cmp_ok($t::PB::Stash{calls}, '<=', 3,
                       "two queues, $t::PB::Stash{calls} transactions");
    my @a = map { $_->{payload}{containerId} } t::PB::envelopes('pbtest:a');
    my @b = map { $_->{payload}{containerId} } t::PB::envelopes('pbtest:b');
    Test::More::is(join(',', sort @a), '501,503,505,507,509', 'odd ones in a');
    Test::More::is(join(',', sort @b), '502,504,506,508,510,600',
                   'even ones and the last request in b');
});
--- request eval
"POST /b?secret=other\n" . t::PB::payload(containerId => 600)
--- error_code: 202



=== TEST 30: duplicates inside one transaction are taken back out of the list
--- init
t::PB::redis('CONFIG', 'RESETSTAT');
my @res = t::PB::concurrent('/hook?secret=s3cret',
    [map { t::PB::payload(containerId => $_) } 71, 72, 71, 73, 72, 71],
    one_iteration => 1);
$t::PB::Stash{res} = \@res;
$t::PB::Stash{calls} = t::PB::push_calls();
t::PB::expect(len => 4, check => sub {
    my @res = @{ $t::PB::Stash{res} };
    Test::More::is(join(',', map { $_->[0] } @res), '202,202,200,202,200,200',
                   'the first of each containerId is queued, the rest are '
                   . 'duplicates');
    Test::More::cmp_ok($t::PB::Stash{calls}, '<=', 2,
                       "$t::PB::Stash{calls} transaction(s)");
    my @queued = map { $_->[1] =~ /"id":"(\w+)"/ ? $1 : () } @res;
    my @stored = map { $_->{id} } t::PB::envelopes('pbtest:webhooks');
    Test::More::is(join(',', sort @stored[0 .. 2]), join(',', sort @queued),
                   'the list holds exactly the envelopes answered 202');
    Test::More::is(t::PB::redis('INFO', 'commandstats') =~ /cmdstat_lrem:calls=3\b/
                   ? 1 : 0, 1, 'three LREMs took the duplicates back');
});
--- request eval
"POST /hook?secret=s3cret\n" . t::PB::payload(containerId => 74)
--- error_code: 202



=== TEST 31: five queues in one pass (one more than the batches kept open)
--- config eval
join '', map { <<"_EOC_" } 1 .. 5;
    location = /q$_ {
        phantombuster_webhook;
        phantombuster_redis 127.0.0.1:\$TEST_NGINX_REDIS_PORT;
        phantombuster_secret s3cret;
        phantombuster_queue pbtest:q$_;
    }
_EOC_
--- init
t::PB::redis('DEL', map { "pbtest:q$_" } 1 .. 5);
my @res = t::PB::concurrent([map { "/q$_?secret=s3cret" } 1 .. 5],
    [map { t::PB::payload(containerId => 700 + $_) } 1 .. 20],
    one_iteration => 1);
$t::PB::Stash{codes} = join ',', map { $_->[0] } @res;
t::PB::expect(len => 5, queue => 'pbtest:q5', check => sub {
    Test::More::is($t::PB::Stash{codes}, join(',', ('202') x 20),
                   'all 20 answered 202');
    for my $q (1 .. 5) {
        my @ids = map { $_->{payload}{containerId} } t::PB::envelopes("pbtest:q$q");
        my @want = map { 700 + $_ } grep { ($_ - 1) % 5 == $q - 1 } 1 .. 20;
        push @want, 799 if $q == 5;
        Test::More::is(join(',', @ids), join(',', @want),
                       "queue q$q holds its own, in order");
    }
});
--- request eval
"POST /q5?secret=s3cret\n" . t::PB::payload(containerId => 799)
--- error_code: 202



=== TEST 32: user= with password_file: AUTH as a Redis 6 ACL user
--- config
    location = /hook {
        phantombuster_webhook;
        phantombuster_redis 127.0.0.1:$TEST_NGINX_AUTH_REDIS_PORT user=pb-acl
            password_file=$TEST_NGINX_PB_ROOT/t/data/redis-acl-password.txt;
        phantombuster_secret s3cret;
        phantombuster_queue pbtest:webhooks;
    }
    location = /default-password {
        phantombuster_webhook;
        phantombuster_redis 127.0.0.1:$TEST_NGINX_AUTH_REDIS_PORT user=pb-acl
            password_file=$TEST_NGINX_PB_ROOT/t/data/redis-password.txt;
        phantombuster_secret s3cret;
        phantombuster_queue pbtest:webhooks;
    }
--- init
t::PB::private_redis('auth');
t::PB::redis('-p', 'auth', 'ACL', 'SETUSER', 'pb-acl', 'on',
             '>pb-acl-password', '~*', '&*', '+@all');
t::PB::expect(len => [1, 1, 2], port => 'auth', check => sub {
    my $re = qr/redis "127\.0\.0\.1:\d+" refused AUTH: WRONGPASS/;
    Test::More::cmp_ok(t::PB::log_count($re), '>=', 1,
                       "the default user's password is refused for pb-acl");
    Test::More::like(t::PB::redis('-p', 'auth', 'CLIENT', 'LIST'),
                     qr/ user=pb-acl /, 'the connection is user pb-acl');
    Test::More::is(t::PB::log_count(qr/pb-acl-password/), 0,
                   'no password in the log');
    t::PB::private_redis_stop('auth');
});
--- request eval
["POST /hook?secret=s3cret\n" . t::PB::payload(containerId => 91),
 "POST /default-password?secret=s3cret\n" . t::PB::payload(containerId => 92),
 "POST /hook?secret=s3cret\n" . t::PB::payload(containerId => 93)]
--- error_code eval
[202, 503, 202]
--- no_error_log
[alert]
[crit]
pb-acl-password
