# HTTP/2 (which Test::Nginx cannot speak to nginx 1.22) and HTTP/1.1
# chunked uploads, driven with curl from the blocks' init against a second
# server that listens with http2.

use Test::Nginx::Socket 'no_plan';
use t::PB;
use File::Temp ();
use Time::HiRes ();

our $HttpConfig = <<'_EOC_';
    server {
        listen 127.0.0.1:$TEST_NGINX_EXTRA_PORT http2;
        server_name h2;
        client_body_buffer_size 1k;

        location = /hook {
            phantombuster_webhook;
            phantombuster_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT;
            phantombuster_secret s3cret;
            phantombuster_queue pbtest:webhooks;
        }

        location = /slow {
            phantombuster_webhook;
            phantombuster_redis 127.0.0.1:$TEST_NGINX_SPARE_REDIS_PORT;
            phantombuster_redis_timeout 3s;
            phantombuster_secret s3cret;
            phantombuster_queue pbtest:webhooks;
        }
    }
_EOC_

our $Config = <<'_EOC_';
    location = /hook {
        phantombuster_webhook;
        phantombuster_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT;
        phantombuster_secret s3cret;
        phantombuster_queue pbtest:webhooks;
    }
_EOC_

# curl with a body from a file: returns (status, http version, body)
sub post {
    my ($url, $body, @opts) = @_;

    my $tmp = File::Temp->new;
    print $tmp $body;
    close $tmp;

    my $out = t::PB::curl('-X', 'POST', '-H', 'Content-Type: application/json',
                          @opts, "--data-binary", '@' . $tmp->filename,
                          '-w', '\n%{http_code} %{http_version}', $url);

    my ($resp, $code, $ver) = $out =~ /^(.*)\n(\d+) (\S+)$/s;

    return ($code || 0, $ver || '', defined $resp ? $resp : $out);
}

sub h2 { "http://127.0.0.1:$ENV{TEST_NGINX_EXTRA_PORT}$_[0]" }

add_block_preprocessor(sub {
    my $block = shift;

    $block->set_value('http_config', $HttpConfig);
    $block->set_value('config', $Config);
    $block->set_value('no_error_log', "[alert]\n[crit]\n[emerg]\n");
});

no_shuffle();
run_tests();

__DATA__

=== TEST 1: HTTP/2 with prior knowledge: queued, stored, 202
--- init
my @r = main::post(main::h2('/hook?secret=s3cret'),
                   t::PB::payload(containerId => 201),
                   '--http2-prior-knowledge');
$t::PB::Stash{r} = \@r;
t::PB::expect(len => 2, check => sub {
    my ($code, $ver, $body) = @{ $t::PB::Stash{r} };
    Test::More::is($ver, '2', 'spoke HTTP/2');
    Test::More::is($code, 202, 'HTTP/2 webhook answered 202');
    Test::More::like($body, qr/^\{"status":"queued","id":"\w{32}"\}$/,
                     'JSON answer');
    my @env = t::PB::envelopes('pbtest:webhooks');
    Test::More::is($env[0]{payload}{containerId}, 201, 'stored first');
    Test::More::is(qq({"status":"queued","id":"$env[0]{id}"}), $body,
                   'the 202 names the stored envelope');
});
--- request eval
"POST /hook?secret=s3cret\n" . t::PB::payload(containerId => 202)
--- error_code: 202



=== TEST 2: HTTP/2 body of unknown length, in a temp file, then a duplicate
--- init
my $big = t::PB::payload(containerId => 203, resultObject => 'z' x 50000);
my @a = main::post(main::h2('/hook?secret=s3cret'), $big,
                   '--http2-prior-knowledge', '-H', 'Content-Length:',
                   '-H', 'Transfer-Encoding: chunked');
my @b = main::post(main::h2('/hook'), $big, '--http2-prior-knowledge',
                   '-H', 'X-Webhook-Secret: s3cret');
$t::PB::Stash{r} = [\@a, \@b];
t::PB::expect(len => 1, check => sub {
    my ($a, $b) = @{ $t::PB::Stash{r} };
    Test::More::is("$a->[0] $a->[1]", '202 2', 'streamed HTTP/2 body 202');
    Test::More::is("$b->[0] $b->[2]", '200 {"status":"duplicate"}',
                   'second delivery is a duplicate');
    my @env = t::PB::envelopes('pbtest:webhooks');
    Test::More::is(length $env[0]{payload}{resultObject}, 50000,
                   'the whole body was read from the temp file');
});
--- request eval
"GET /hook?secret=s3cret"
--- error_code: 405
--- error_log
a client request body is buffered to a temporary file



=== TEST 3: HTTP/2 rejections: bad JSON 400, wrong secret 403, GET 405
--- init
my @a = main::post(main::h2('/hook?secret=s3cret'), '{"containerId":',
                   '--http2-prior-knowledge');
my @b = main::post(main::h2('/hook?secret=nope'), t::PB::payload(),
                   '--http2-prior-knowledge');
# refused before the body is read: nginx must not reset the stream under
# the client (curl then reports a framing error instead of the status)
my %codes;
for my $i (1 .. 20) {
    my @r = main::post(main::h2($i % 2 ? '/hook?secret=nope' : '/hook'),
                       t::PB::payload(resultObject => 'r' x 3000),
                       '--http2-prior-knowledge');
    $codes{$r[0]}++;
}
$t::PB::Stash{codes} = join ',', map { "$_ x$codes{$_}" } sort keys %codes;
my $c = t::PB::curl('--http2-prior-knowledge', '-i',
                    main::h2('/hook?secret=s3cret'));
$t::PB::Stash{r} = [\@a, \@b, $c];
t::PB::expect(len => 0, check => sub {
    my ($a, $b, $c) = @{ $t::PB::Stash{r} };
    Test::More::is("$a->[0] $a->[2]", '400 {"error":"truncated json"}',
                   'bad JSON over HTTP/2');
    Test::More::is("$b->[0] $b->[2]", '403 {"error":"invalid secret"}',
                   'wrong secret over HTTP/2');
    Test::More::is($t::PB::Stash{codes}, '401 x10,403 x10',
                   'twenty refusals over HTTP/2 all reach the client');
    Test::More::like($c, qr{^HTTP/2 405}, 'GET over HTTP/2 is 405');
    Test::More::like($c, qr{^allow: POST\r?$}mi, 'with Allow: POST');
});
--- request eval
"POST /hook?secret=s3cret\n[]"
--- error_code: 400



=== TEST 4: HTTP/1.1 chunked upload with curl
--- init
my @a = main::post('http://127.0.0.1:' . t::PB::server_port()
                   . '/hook?secret=s3cret',
                   t::PB::payload(containerId => 204),
                   '-H', 'Transfer-Encoding: chunked');
$t::PB::Stash{r} = \@a;
t::PB::expect(len => 2, check => sub {
    my ($code, $ver, $body) = @{ $t::PB::Stash{r} };
    Test::More::is("$code $ver", '202 1.1', 'chunked HTTP/1.1 upload 202');
    my @env = t::PB::envelopes('pbtest:webhooks');
    Test::More::is($env[0]{payload}{containerId}, 204, 'stored');
});
--- request eval
"POST /hook?secret=s3cret\n" . t::PB::payload(containerId => 205)
--- error_code: 202



=== TEST 5: an HTTP/2 client that leaves mid-push: stored once, no crash
--- init
my $port = $t::PB::SpareRedisPort;
t::PB::redis_start($port);
t::PB::redis('-p', $port, 'FLUSHALL');
my @w = main::post(main::h2('/slow?secret=s3cret'),
                   t::PB::payload(containerId => 300),
                   '--http2-prior-knowledge');
t::PB::redis('-p', $port, 'CLIENT', 'PAUSE', '1000', 'WRITE');
my $t0 = Time::HiRes::time();
my @a = main::post(main::h2('/slow?secret=s3cret'),
                   t::PB::payload(containerId => 301),
                   '--http2-prior-knowledge', '--max-time', '0.3');
my $left = Time::HiRes::time() - $t0;
Time::HiRes::sleep(1.2);
my @b = main::post(main::h2('/slow?secret=s3cret'),
                   t::PB::payload(containerId => 302),
                   '--http2-prior-knowledge');
$t::PB::Stash{r} = [\@w, \@a, \@b, $left];
t::PB::expect(len => 3, port => $port, check => sub {
    my ($w, $a, $b, $left) = @{ $t::PB::Stash{r} };
    Test::More::is($w->[0], 202, 'connected to the spare Redis');
    Test::More::is($a->[0], '000', "client gave up ($left s)");
    Test::More::is($b->[0], 202, 'next webhook is queued');
    my @env = t::PB::envelopes('pbtest:webhooks', 0, $port);
    Test::More::is(join(',', map { $_->{payload}{containerId} } @env),
                   '300,301,302', 'the abandoned push is stored once');
});
--- request eval
"POST /hook?secret=s3cret\n" . t::PB::payload(containerId => 303)
--- error_code: 202
--- error_log
client closed the request while its push was pending
