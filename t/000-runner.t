# Self-test of the test scaffold: a genuine Test::Nginx::Socket suite that
# only needs stock nginx (no project module), so it runs the same under the
# real Test::Nginx and under our fallback in t/lib.
#
#   PERL5LIB=t/lib:. TEST_NGINX_BINARY=/usr/sbin/nginx prove -r t/000-runner.t

use Test::Nginx::Socket;

repeat_each(2);

# 44 checks per repetition, counted as the real Test::Nginx counts them
# (see the "# n" notes on each block).
plan tests => repeat_each() * 44;

env_to_nginx('PB_RUNNER_SELFTEST');
$ENV{PB_RUNNER_SELFTEST} = 1;

# Default client timeout for blocks without their own.
add_block_preprocessor(sub {
    my $block = shift;
    $block->set_value(timeout => 5) unless defined $block->timeout;
});

# A custom section checked on every response (one extra test where used).
add_response_body_check(sub {
    my ($block, $body, $req_idx, $repeated_req_idx, $dry_run) = @_;
    if (defined $block->body_len) {
        is(length($body // ''), $block->body_len,
           $block->name . " - body length (req $req_idx)");
    }
});

run_tests();

__DATA__

=== TEST 1: return + add_header + default_type
# 1 status + 3 headers + 1 body + 1 body_len + 1 no_error_log = 7
--- config
    location = /t {
        default_type application/json;
        add_header X-Foo bar;
        return 200 '{"a":1}';
    }
--- request
GET /t
--- response_headers
Content-Type: application/json
X-Foo: bar
!X-Absent
--- response_body chomp
{"a":1}
--- body_len: 7
--- no_error_log
[error]



=== TEST 2: POST body + more_headers through a proxied location
# 1 status + 1 header + 1 body = 3
--- config
    location = /t {
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/back;
        add_header X-Body $request_body;
    }
    location = /back {
        return 201 "token=$http_x_token len=$content_length\n";
    }
--- request
POST /t
hello world
--- more_headers
X-Token: abc
--- error_code: 201
--- response_headers
X-Body: hello world
--- response_body
token=abc len=11



=== TEST 3: request eval with two requests
# 2 x (1 status + 1 body) + 2 x 1 no_error_log = 6
--- config
    location = /a { return 200 "a\n"; }
    location = /b { return 404; }
--- request eval
["GET /a", "GET /b HTTP/1.0"]
--- error_code eval
[200, 404]
--- response_body_like eval
["^a\$", "404 Not Found"]
--- no_error_log
[error]



=== TEST 4: pipelined requests on one connection
# 2 x (1 status + 1 body) + 2 x 1 no_error_log = 6
--- config
    location ~ ^/p(\d)$ { return 200 "p$1\n"; }
--- pipelined_requests eval
["GET /p1", "GET /p2"]
--- response_body eval
["p1\n", "p2\n"]
--- no_error_log
[error]



=== TEST 5: chunked request body via raw_request (separate writes)
# 1 status + 1 header + 1 body = 3
--- config
    location = /t {
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/back;
        add_header X-Body $request_body;
    }
    location = /back {
        return 200 "len=$content_length\n";
    }
--- raw_request eval
["POST /t HTTP/1.1\r
Host: localhost\r
Connection: close\r
Transfer-Encoding: chunked\r
\r
5\r
hello\r
",
"6\r
 world\r
0\r
\r
"]
--- response_headers
X-Body: hello world
--- response_body
len=11



=== TEST 6: user_files, alias built from $TEST_NGINX_SERVER_ROOT
# 1 status + 1 header + 1 body = 3
--- config
    location /files/ {
        alias $TEST_NGINX_SERVER_ROOT/html/;
    }
--- user_files
>>> foo.txt
hello from a file
>>> sub/bar.txt
bar
--- request
GET /files/foo.txt
--- response_headers
Content-Type: text/plain
--- response_body
hello from a file



=== TEST 7: silent/slow fake upstream -> 504
# 1 status + 1 error_log + 1 tcp_query = 3
--- config
    location = /slow {
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
        proxy_read_timeout 200ms;
    }
--- tcp_listen: $TEST_NGINX_RAND_PORT_1
--- tcp_reply_delay: 600ms
--- tcp_reply eval
"HTTP/1.0 200 OK\r\n\r\ntoo late"
--- tcp_query eval
qr{^GET /slow HTTP/1\.0\r\n}
--- request
GET /slow
--- error_code: 504
--- error_log
upstream timed out



=== TEST 8: garbage from the fake upstream -> 502
# 1 status + 1 body + 1 error_log = 3
--- config
    location = /junk {
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
--- tcp_listen: $TEST_NGINX_RAND_PORT_1
--- tcp_reply eval
["HTTP/1.0 200 OK\r\n", "X-Bad\0Header: 1\r\n\r\n"]
--- request
GET /junk
--- error_code: 502
--- response_body_like: 502 Bad Gateway
--- error_log
upstream sent invalid header



=== TEST 9: nginx must refuse a bogus directive
# 1 exit status + 2 error_log = 3
--- config
    location = /t {
        bogus_directive on;
    }
--- must_die
--- error_log
[emerg]
unknown directive "bogus_directive"



=== TEST 10: error_log / grep_error_log / no_error_log
# 1 status + 1 grep + 1 error_log + 2 no_error_log = 5
--- config
    location = /refused {
        proxy_pass http://127.0.0.1:1;
    }
--- request
GET /refused
--- error_code: 502
--- grep_error_log eval
qr/connect\(\) failed \(\d+: [^)]+\)/
--- grep_error_log_out
connect() failed (111: Connection refused)
--- error_log eval
qr/\[error\] .*while connecting to upstream/
--- no_error_log
[alert]
[crit]



=== TEST 11: client timeout expected (abort)
# 1 status (nothing received: empty) + 1 no_error_log = 2
--- config
    location = /hang {
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
--- tcp_listen: $TEST_NGINX_RAND_PORT_1
--- tcp_reply:
--- tcp_no_close
--- request
GET /hang
--- timeout: 300ms
--- abort
--- error_code:
--- no_error_log
[error]



=== TEST 12: skipped block (never run, not counted)
--- SKIP
--- config
--- request
GET /nowhere
--- error_code: 599
