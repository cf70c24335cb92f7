# The basic webhook path: a valid POST is pushed to Redis as one envelope
# and answered 202 only after Redis replied.

use Test::Nginx::Socket 'no_plan';
use t::PB;

no_shuffle();
run_tests();

__DATA__

=== TEST 1: a valid webhook is queued and answered 202 with its id
--- config
    location = /hook {
        phantombuster_webhook;
        phantombuster_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT;
        phantombuster_secret s3cret;
        phantombuster_queue pbtest:webhooks;
    }
--- init
t::PB::expect(len => 1, check => sub {
    my ($block, $body) = @_;
    my ($id) = $body =~ /"id":"([0-9a-f]{32})"/;
    my @env = t::PB::envelopes('pbtest:webhooks');
    Test::More::is($env[0]{id}, $id, "envelope id is the request id");
    Test::More::is($env[0]{queue}, 'pbtest:webhooks', "envelope names its queue");
    Test::More::is_deeply($env[0]{payload}, t::PB::sample(), "payload kept as sent");
    my $now = int(Time::HiRes::time() * 1000);
    Test::More::ok(abs($now - $env[0]{received_at}) < 10000, "received_at is ms");
});
--- request eval
"POST /hook?secret=s3cret\n" . t::PB::payload()
--- more_headers
Content-Type: application/json
--- error_code: 202
--- response_headers
Content-Type: application/json
--- response_body_like: ^\{"status":"queued","id":"[0-9a-f]{32}"\}$
--- no_error_log
[error]
[alert]
[crit]
