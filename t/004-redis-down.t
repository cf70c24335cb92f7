# Redis down, refusing, silent or slow: every waiting request gets 503
# {"error":"queue unavailable"} with Retry-After within the timeout plus a
# small margin, nginx keeps serving, and the first request once Redis is
# back is queued without a reload.  Also: a client that leaves while its
# push is pending.
#
# Blocks that stop or pause Redis use a private redis-server on
# $t::PB::SpareRedisPort, never the shared test instance.

use Test::Nginx::Socket 'no_plan';
use t::PB;
use Time::HiRes ();

our $Margin = 0.5;

# elapsed seconds of each request, measured from init or the previous one
sub lap {
    my $now = Time::HiRes::time();
    my $lap = $now - $t::PB::T0;
    $t::PB::T0 = $now;
    return $lap;
}

add_block_preprocessor(sub {
    my $block = shift;

    $block->set_value('no_error_log', "[alert]\n[crit]\n[emerg]\n")
        unless defined $block->no_error_log;
});

no_shuffle();
run_tests();

__DATA__

=== TEST 1: nothing listens on the Redis port: 503 at once, nginx serves on
--- config
    location = /hook {
        phantombuster_webhook;
        phantombuster_redis 127.0.0.1:$TEST_NGINX_EXTRA_PORT;
        phantombuster_redis_timeout 1s;
        phantombuster_secret s3cret;
        phantombuster_queue pbtest:webhooks;
    }
    location = /ping {
        return 200 "pong\n";
    }
--- init
$t::PB::T0 = Time::HiRes::time();
t::PB::expect(len => [0, 0, 0], each => sub {
    my $lap = main::lap();
    Test::More::cmp_ok($lap, '<', 1 + $main::Margin,
                       "request $_[0] answered in $lap s");
}, check => sub {
    my $re = qr/could not connect to redis "[\d.:]+": Connection refused/;
    Test::More::cmp_ok(t::PB::log_count($re), '>=', 2,
                       'each webhook tried to connect');
});
--- request eval
["POST /hook?secret=s3cret\n" . t::PB::payload(containerId => 1),
 "POST /hook?secret=s3cret\n" . t::PB::payload(containerId => 2),
 "GET /ping"]
--- error_code eval
[503, 503, 200]
--- response_body eval
['{"error":"queue unavailable"}', '{"error":"queue unavailable"}', "pong\n"]



=== TEST 2: the 503 carries Retry-After and a JSON content type
--- config
    location = /hook {
        phantombuster_webhook;
        phantombuster_redis 127.0.0.1:$TEST_NGINX_EXTRA_PORT;
        phantombuster_secret s3cret;
        add_header X-PB-Result $phantombuster_result always;
    }
--- init
t::PB::expect(len => 0);
--- request eval
"POST /hook?secret=s3cret\n" . t::PB::payload()
--- error_code: 503
--- response_headers
Retry-After: 1
Content-Type: application/json
X-PB-Result: queue unavailable



=== TEST 3: a Redis that accepts but never answers: 503 after the timeout
--- config
    location = /hook {
        phantombuster_webhook;
        phantombuster_redis 127.0.0.1:$TEST_NGINX_EXTRA_PORT;
        phantombuster_redis_timeout 1s;
        phantombuster_secret s3cret;
        phantombuster_queue pbtest:webhooks;
    }
--- tcp_listen: $TEST_NGINX_EXTRA_PORT
--- tcp_reply_delay: 3s
--- tcp_reply: +OK
--- init
$t::PB::T0 = Time::HiRes::time();
t::PB::expect(len => 0, each => sub {
    my $lap = main::lap();
    Test::More::cmp_ok($lap, '>=', 0.9, "waited for the timeout ($lap s)");
    Test::More::cmp_ok($lap, '<', 1 + $main::Margin,
                       "but not longer ($lap s)");
});
--- request eval
"POST /hook?secret=s3cret\n" . t::PB::payload()
--- error_code: 503
--- response_body chomp
{"error":"queue unavailable"}
--- error_log
phantombuster: redis did not answer within 1000 ms
did not reply within 1000 ms, closing the connection
--- timeout: 5



=== TEST 4: a Redis that refuses (error reply, then close): 503 at once
--- config
    location = /hook {
        phantombuster_webhook;
        phantombuster_redis 127.0.0.1:$TEST_NGINX_EXTRA_PORT;
        phantombuster_redis_timeout 2s;
        phantombuster_secret s3cret;
    }
--- tcp_listen: $TEST_NGINX_EXTRA_PORT
--- tcp_reply eval
"-ERR max number of clients reached\r\n"
--- init
$t::PB::T0 = Time::HiRes::time();
t::PB::expect(len => 0, each => sub {
    my $lap = main::lap();
    Test::More::cmp_ok($lap, '<', 1, "refusal answered in $lap s");
});
--- request eval
"POST /hook?secret=s3cret\n" . t::PB::payload()
--- error_code: 503
--- response_body chomp
{"error":"queue unavailable"}



=== TEST 5: Redis stopped, then restarted: 503 fast, then 202 without reload
--- config
    location = /hook {
        phantombuster_webhook;
        phantombuster_redis 127.0.0.1:$TEST_NGINX_SPARE_REDIS_PORT;
        phantombuster_redis_timeout 1s;
        phantombuster_secret s3cret;
        phantombuster_queue pbtest:webhooks;
    }
--- init
my $port = $t::PB::SpareRedisPort;
t::PB::redis_start($port);
t::PB::redis('-p', $port, 'FLUSHALL');
my @warm = t::PB::concurrent('/hook?secret=s3cret',
                             [t::PB::payload(containerId => 10)]);
Test::More::is($warm[0][0], 202, 'queued while Redis is up');
t::PB::redis_stop($port);
$t::PB::T0 = Time::HiRes::time();
t::PB::expect(len => [undef, undef, 2, 3], port => $port, each => sub {
    my $lap = main::lap();
    if ($_[0] < 2) {
        Test::More::cmp_ok($lap, '<', 1 + $main::Margin,
                           "503 while down in $lap s");
    }
    if ($_[0] == 1) {
        t::PB::redis_start($port);
        $t::PB::T0 = Time::HiRes::time();
    }
}, check => sub {
    my @env = t::PB::envelopes('pbtest:webhooks', 0, $port);
    Test::More::is(join(',', map { $_->{payload}{containerId} } @env),
                   '10,13,14', 'nothing from the outage, all after it');
});
--- request eval
[map { "POST /hook?secret=s3cret\n" . t::PB::payload(containerId => $_) }
     11 .. 14]
--- error_code eval
[503, 503, 202, 202]
--- no_error_log
[alert]
[crit]



=== TEST 6: Redis too slow (CLIENT PAUSE): 503 at the timeout, then 202
--- config
    location = /hook {
        phantombuster_webhook;
        phantombuster_redis 127.0.0.1:$TEST_NGINX_SPARE_REDIS_PORT;
        phantombuster_redis_timeout 500ms;
        phantombuster_secret s3cret;
        phantombuster_queue pbtest:webhooks;
    }
--- init
my $port = $t::PB::SpareRedisPort;
t::PB::redis_start($port);
t::PB::redis('-p', $port, 'FLUSHALL');
my @warm = t::PB::concurrent('/hook?secret=s3cret',
                             [t::PB::payload(containerId => 20)]);
Test::More::is($warm[0][0], 202, 'connected and queued');
t::PB::redis('-p', $port, 'CLIENT', 'PAUSE', '1500', 'WRITE');
$t::PB::T0 = Time::HiRes::time();
t::PB::expect(len => [undef, 2], port => $port, each => sub {
    my $lap = main::lap();
    if ($_[0] == 0) {
        Test::More::cmp_ok($lap, '>=', 0.45, "waited ($lap s)");
        Test::More::cmp_ok($lap, '<', 0.5 + $main::Margin,
                           "503 within timeout + margin ($lap s)");
        Time::HiRes::sleep(1.2);
    }
}, check => sub {
    my @env = t::PB::envelopes('pbtest:webhooks', 0, $port);
    Test::More::is(join(',', map { $_->{payload}{containerId} } @env),
                   '20,22', 'the timed-out push was not executed');
    Test::More::is(t::PB::log_count(qr/redis did not answer within 500 ms/),
                   1, 'the timeout is logged');
});
--- request eval
["POST /hook?secret=s3cret\n" . t::PB::payload(containerId => 21),
 "POST /hook?secret=s3cret\n" . t::PB::payload(containerId => 22)]
--- error_code eval
[503, 202]
--- timeout: 5



=== TEST 7: a client that leaves while its push is pending
--- config
    location = /hook {
        phantombuster_webhook;
        phantombuster_redis 127.0.0.1:$TEST_NGINX_SPARE_REDIS_PORT;
        phantombuster_redis_timeout 3s;
        phantombuster_secret s3cret;
        phantombuster_queue pbtest:webhooks;
    }
--- init
require IO::Socket::INET;
my $port = $t::PB::SpareRedisPort;
t::PB::redis_start($port);
t::PB::redis('-p', $port, 'FLUSHALL');
my @warm = t::PB::concurrent('/hook?secret=s3cret',
                             [t::PB::payload(containerId => 30)]);
Test::More::is($warm[0][0], 202, 'connected and queued');
t::PB::redis('-p', $port, 'CLIENT', 'PAUSE', '1000', 'WRITE');
my $body = t::PB::payload(containerId => 31);
for (1 .. 3) {
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                  PeerPort => t::PB::server_port())
        or die "connect: $!";
    print $s "POST /hook?secret=s3cret HTTP/1.1\r\nHost: localhost\r\n"
             . "Content-Length: " . length($body) . "\r\n\r\n$body";
    Time::HiRes::sleep(0.1);
    close $s;
}
Time::HiRes::sleep(1.3);
t::PB::expect(len => 3, port => $port, check => sub {
    my @env = t::PB::envelopes('pbtest:webhooks', 0, $port);
    Test::More::is(join(',', map { $_->{payload}{containerId} } @env),
                   '30,31,32', 'the abandoned push is stored once');
});
--- request eval
"POST /hook?secret=s3cret\n" . t::PB::payload(containerId => 32)
--- error_code: 202
--- error_log
client closed the request while its push was pending
--- no_error_log
[alert]
[crit]
[emerg]



=== TEST 8: 70 failed connects leak no descriptor and no connection slot
--- config
    location = /hook {
        phantombuster_webhook;
        phantombuster_redis 127.0.0.1:$TEST_NGINX_EXTRA_PORT;
        phantombuster_secret s3cret;
        phantombuster_queue pbtest:webhooks;
    }
--- init
t::PB::expect(len => [(0) x 70], each => sub {
    my ($i) = @_;
    $t::PB::Stash{fd0} = t::PB::fd_count() if $i == 0;
    if ($i == 69) {
        my $fds = t::PB::fd_count();
        Test::More::ok($fds > 0, "nginx has $fds descriptors open");
        Test::More::cmp_ok($fds, '<=', $t::PB::Stash{fd0},
                           'no more than after the first failed connect');
    }
});
--- request eval
[map { "POST /hook?secret=s3cret\n" . t::PB::payload(containerId => $_) }
     1 .. 70]
--- error_code eval
[(503) x 70]
--- no_error_log
[alert]
[crit]
worker_connections are not enough



=== TEST 9: losing and reopening the connection never closes an fd twice
--- config
    location = /hook {
        phantombuster_webhook;
        phantombuster_redis 127.0.0.1:$TEST_NGINX_SPARE_REDIS_PORT;
        phantombuster_secret s3cret;
        phantombuster_queue pbtest:webhooks;
    }
--- init
# strace records every close() of nginx while Redis goes away and comes
# back: a descriptor closed twice (nginx's slot and hiredis both closing
# it) shows up as "close(N) = -1 EBADF"
my $port = $t::PB::SpareRedisPort;
t::PB::redis_start($port);
t::PB::redis('-p', $port, 'FLUSHALL');
my @warm = t::PB::concurrent('/hook?secret=s3cret',
                             [t::PB::payload(containerId => 40)]);
Test::More::is($warm[0][0], 202, 'connected and queued');
my $trace = "/tmp/pb/strace-$port.txt";
unlink $trace;
my $have = system('sh', '-c', 'command -v strace >/dev/null') == 0;
$t::PB::Stash{strace} = $have ? fork() : 0;
if ($have && $t::PB::Stash{strace} == 0) {
    { exec 'strace', '-f', '-qq', '-e', 'trace=close', '-o', $trace,
           '-p', t::PB::nginx_pid(); }
    POSIX::_exit(127);
}
Time::HiRes::sleep(0.5);
t::PB::redis_stop($port);
t::PB::expect(len => [undef, undef, 2], port => $port, each => sub {
    t::PB::redis_start($port) if $_[0] == 1;
}, check => sub {
    SKIP: {
        Test::More::skip('strace is not installed', 2) unless $have;
        kill 'INT', $t::PB::Stash{strace};
        waitpid($t::PB::Stash{strace}, 0);
        open my $fh, '<', $trace or die "$trace: $!";
        my @lines = <$fh>;
        close $fh;
        my @closes = grep { /close\(\d+\)\s+= 0/ } @lines;
        my @twice = grep { /close\(\d+\)\s+= -1 EBADF/ } @lines;
        Test::More::cmp_ok(scalar @closes, '>=', 3,
                           'strace saw the closes (' . @closes . ')');
        Test::More::is(scalar @twice, 0, 'no descriptor closed twice')
            or Test::More::diag(@twice);
    }
});
--- request eval
[map { "POST /hook?secret=s3cret\n" . t::PB::payload(containerId => $_) }
     41 .. 43]
--- error_code eval
[503, 503, 202]



=== TEST 10: a reply burst larger than hiredis's 16 KiB read is not stranded
--- config
    location = /hook {
        phantombuster_webhook;
        phantombuster_redis 127.0.0.1:$TEST_NGINX_EXTRA_PORT;
        phantombuster_redis_timeout 2s;
        phantombuster_secret s3cret;
        phantombuster_queue pbtest:webhooks;
    }
--- init
$t::PB::Stash{fake} = t::PB::fake_redis_burst($t::PB::ExtraPort, 40000);
$t::PB::T0 = Time::HiRes::time();
t::PB::expect(len => 0, each => sub {
    my $lap = main::lap();
    Test::More::cmp_ok($lap, '<', 1, "answered without a timeout ($lap s)");
    kill 'KILL', $t::PB::Stash{fake};
    waitpid($t::PB::Stash{fake}, 0);
});
--- request eval
"POST /hook?secret=s3cret\n" . t::PB::payload()
--- error_code: 202
--- response_body_like: ^\{"status":"queued"
--- error_log
returned an unexpected digest for the push script



=== TEST 11: no phantombuster_redis: the default 127.0.0.1:6379 (unused here)
--- config
    location = /hook {
        phantombuster_webhook;
        phantombuster_secret off;
        phantombuster_queue pbtest:webhooks;
    }
--- request eval
"POST /hook\n" . t::PB::payload()
--- error_code: 503
--- response_body chomp
{"error":"queue unavailable"}
--- error_log
could not connect to redis "127.0.0.1:6379"
