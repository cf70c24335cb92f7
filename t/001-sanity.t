# The basic webhook path: a valid POST is pushed to Redis as one envelope
# and answered 202 only after Redis replied.

use Test::Nginx::Socket 'no_plan';
use t::PB;

our $Config = <<'_EOC_';
    location = /hook {
        phantombuster_webhook;
        phantombuster_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT;
        phantombuster_secret s3cret;
        phantombuster_queue pbtest:webhooks;
    }
_EOC_

add_block_preprocessor(sub {
    my $block = shift;

    $block->set_value('config', $Config) unless defined $block->config;
});

no_shuffle();
run_tests();

__DATA__

=== TEST 1: a valid webhook is queued and answered 202 with its id
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



=== TEST 2: the id is the request's $request_id, as headers and logs see it
--- config
    location = /hook {
        phantombuster_webhook;
        phantombuster_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT;
        phantombuster_secret s3cret;
        phantombuster_queue pbtest:webhooks;
        add_header X-Request-Id $request_id always;
    }
--- init
my ($res) = t::PB::concurrent('/hook?secret=s3cret',
                              [t::PB::payload(containerId => 21)]);
$t::PB::Stash{body_id} = $res->[1] =~ /"id":"([0-9a-f]{32})"/ ? $1 : 'none';
$t::PB::Stash{header_id} = $res->[2] =~ /X-Request-Id: (\S+)/i ? $1 : 'none';
t::PB::expect(len => 2, check => sub {
    Test::More::is($t::PB::Stash{header_id}, $t::PB::Stash{body_id},
                   '$request_id is the id answered');
    my @env = t::PB::envelopes('pbtest:webhooks');
    Test::More::is($env[0]{id}, $t::PB::Stash{body_id},
                   'and the envelope\'s id');
});
--- request eval
"POST /hook?secret=s3cret\n" . t::PB::payload(containerId => 22)
--- error_code: 202
--- no_error_log
[error]



=== TEST 3: a $request_id used before the webhook handler runs is kept
--- config
    location = /hook {
        set $early $request_id;
        phantombuster_webhook;
        phantombuster_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT;
        phantombuster_secret s3cret;
        phantombuster_queue pbtest:webhooks;
        add_header X-Early $early always;
    }
--- init
my ($res) = t::PB::concurrent('/hook?secret=s3cret',
                              [t::PB::payload(containerId => 31)]);
$t::PB::Stash{body_id} = $res->[1] =~ /"id":"([0-9a-f]{32})"/ ? $1 : 'none';
$t::PB::Stash{early} = $res->[2] =~ /X-Early: (\S+)/i ? $1 : 'none';
t::PB::expect(len => 2, check => sub {
    Test::More::is($t::PB::Stash{body_id}, $t::PB::Stash{early},
                   'the id nginx made first is the one answered');
});
--- request eval
"POST /hook?secret=s3cret\n" . t::PB::payload(containerId => 32)
--- error_code: 202
--- no_error_log
[error]



=== TEST 4: many webhooks, many distinct ids, one per envelope
--- init
my @res = t::PB::concurrent('/hook?secret=s3cret',
    [map { t::PB::payload(containerId => 9000 + $_) } 1 .. 40]);
my %ids = map { $_->[1] =~ /"id":"([0-9a-f]{32})"/ ? ($1 => 1) : () } @res;
$t::PB::Stash{distinct} = scalar keys %ids;
t::PB::expect(len => 41, check => sub {
    Test::More::is($t::PB::Stash{distinct}, 40, "40 answers, 40 ids");
    my %env = map { $_->{id} => 1 } t::PB::envelopes('pbtest:webhooks');
    Test::More::is(scalar(grep { $env{$_} } keys %ids), 40,
                   'each id names its envelope');
});
--- request eval
"POST /hook?secret=s3cret\n" . t::PB::payload(containerId => 8999)
--- error_code: 202
