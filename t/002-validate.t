# Every rejected webhook gets its documented status and JSON reason, and
# nothing reaches the Redis list (each block checks it is still empty).

use Test::Nginx::Socket 'no_plan';
use t::PB;

our $Config = <<'_EOC_';
    location = /hook {
        phantombuster_webhook;
        phantombuster_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT;
        phantombuster_secret s3cret;
        phantombuster_queue pbtest:webhooks;
        client_max_body_size 4k;
    }
_EOC_

add_block_preprocessor(sub {
    my $block = shift;

    $block->set_value('config', $Config) unless defined $block->config;
    $block->set_value('init', 't::PB::expect(len => 0);')
        unless defined $block->init;
    $block->set_value('no_error_log', "[alert]\n[crit]\n[emerg]\n")
        unless defined $block->no_error_log;
});

no_shuffle();
run_tests();

__DATA__

=== TEST 1: GET is refused with 405 and Allow: POST
--- request eval
"GET /hook?secret=s3cret"
--- error_code: 405
--- response_body chomp
{"error":"method not allowed"}
--- response_headers
Allow: POST
Content-Type: application/json

=== TEST 2: PUT is refused with 405
--- request eval
"PUT /hook?secret=s3cret\n" . t::PB::payload()
--- error_code: 405
--- response_body chomp
{"error":"method not allowed"}
--- response_headers
Allow: POST

=== TEST 3: DELETE is refused with 405
--- request eval
"DELETE /hook?secret=s3cret"
--- error_code: 405
--- response_body chomp
{"error":"method not allowed"}

=== TEST 4: missing secret is 401
--- request eval
"POST /hook\n" . t::PB::payload()
--- error_code: 401
--- response_body chomp
{"error":"missing secret"}

=== TEST 5: empty secret argument is 401
--- request eval
"POST /hook?secret=\n" . t::PB::payload()
--- error_code: 401
--- response_body chomp
{"error":"missing secret"}

=== TEST 6: wrong secret in the query is 403
--- request eval
"POST /hook?secret=wrong\n" . t::PB::payload()
--- error_code: 403
--- response_body chomp
{"error":"invalid secret"}

=== TEST 7: a prefix of the secret is 403
--- request eval
"POST /hook?secret=s3cre\n" . t::PB::payload()
--- error_code: 403
--- response_body chomp
{"error":"invalid secret"}

=== TEST 8: the secret plus a byte is 403
--- request eval
"POST /hook?secret=s3cret1\n" . t::PB::payload()
--- error_code: 403
--- response_body chomp
{"error":"invalid secret"}

=== TEST 9: wrong secret in X-Webhook-Secret is 403
--- request eval
"POST /hook\n" . t::PB::payload()
--- error_code: 403
--- response_body chomp
{"error":"invalid secret"}
--- more_headers
X-Webhook-Secret: nope

=== TEST 10: empty body is 400
--- request eval
"POST /hook?secret=s3cret\n"
--- error_code: 400
--- response_body chomp
{"error":"empty body"}

=== TEST 11: truncated JSON is 400
--- request eval
"POST /hook?secret=s3cret\n{\"containerId\":1"
--- error_code: 400
--- response_body chomp
{"error":"truncated json"}

=== TEST 12: malformed JSON is 400
--- request eval
"POST /hook?secret=s3cret\n{\"containerId\":}"
--- error_code: 400
--- response_body chomp
{"error":"invalid json"}

=== TEST 13: trailing garbage after the object is 400
--- request eval
"POST /hook?secret=s3cret\n" . t::PB::payload() . " x"
--- error_code: 400
--- response_body chomp
{"error":"trailing data after json"}

=== TEST 14: a form-encoded body is 400
--- request eval
"POST /hook?secret=s3cret\ncontainerId=1&agentId=2"
--- error_code: 400
--- response_body chomp
{"error":"invalid json"}

=== TEST 15: a JSON array is 400
--- request eval
"POST /hook?secret=s3cret\n[" . t::PB::payload() . "]"
--- error_code: 400
--- response_body chomp
{"error":"payload must be a json object"}

=== TEST 16: a JSON string is 400
--- request eval
"POST /hook?secret=s3cret\n\"hello\""
--- error_code: 400
--- response_body chomp
{"error":"payload must be a json object"}

=== TEST 17: a JSON number is 400
--- request eval
"POST /hook?secret=s3cret\n42"
--- error_code: 400
--- response_body chomp
{"error":"payload must be a json object"}

=== TEST 18: JSON null is 400
--- request eval
"POST /hook?secret=s3cret\nnull"
--- error_code: 400
--- response_body chomp
{"error":"payload must be a json object"}

=== TEST 19: missing containerId is 400
--- request eval
"POST /hook?secret=s3cret\n" . t::PB::payload(containerId => undef)
--- error_code: 400
--- response_body chomp
{"error":"missing containerId"}

=== TEST 20: empty containerId is 400
--- request eval
"POST /hook?secret=s3cret\n" . t::PB::payload(containerId => "")
--- error_code: 400
--- response_body chomp
{"error":"containerId must be a non-empty id string or an integer"}

=== TEST 21: negative containerId is 400
--- request eval
"POST /hook?secret=s3cret\n" . t::PB::payload(containerId => -5)
--- error_code: 400
--- response_body chomp
{"error":"containerId must be a non-empty id string or an integer"}

=== TEST 22: fractional containerId is 400
--- request eval
"POST /hook?secret=s3cret\n" . t::PB::payload(containerId => 1.5)
--- error_code: 400
--- response_body chomp
{"error":"containerId must be a non-empty id string or an integer"}

=== TEST 23: containerId with a space is 400
--- request eval
"POST /hook?secret=s3cret\n" . t::PB::payload(containerId => "a b")
--- error_code: 400
--- response_body chomp
{"error":"containerId must be a non-empty id string or an integer"}

=== TEST 24: containerId of 65 characters is 400
--- request eval
"POST /hook?secret=s3cret\n" . t::PB::payload(containerId => "x" x 65)
--- error_code: 400
--- response_body chomp
{"error":"containerId must be a non-empty id string or an integer"}

=== TEST 25: containerId as an object is 400
--- request eval
"POST /hook?secret=s3cret\n" . t::PB::payload(containerId => {id => 1})
--- error_code: 400
--- response_body chomp
{"error":"containerId must be a non-empty id string or an integer"}

=== TEST 26: containerId as a boolean is 400
--- request eval
"POST /hook?secret=s3cret\n" . t::PB::payload(containerId => JSON::PP::true())
--- error_code: 400
--- response_body chomp
{"error":"containerId must be a non-empty id string or an integer"}

=== TEST 27: missing agentId is 400
--- request eval
"POST /hook?secret=s3cret\n" . t::PB::payload(agentId => undef)
--- error_code: 400
--- response_body chomp
{"error":"missing agentId"}

=== TEST 28: agentId as an array is 400
--- request eval
"POST /hook?secret=s3cret\n" . t::PB::payload(agentId => [1])
--- error_code: 400
--- response_body chomp
{"error":"agentId must be a non-empty id string or an integer"}

=== TEST 29: missing exitCode is 400
--- request eval
"POST /hook?secret=s3cret\n" . t::PB::payload(exitCode => undef)
--- error_code: 400
--- response_body chomp
{"error":"missing exitCode"}

=== TEST 30: exitCode as a string is 400
--- request eval
"POST /hook?secret=s3cret\n" . t::PB::payload(exitCode => "0")
--- error_code: 400
--- response_body chomp
{"error":"exitCode must be an integer"}

=== TEST 31: fractional exitCode is 400
--- request eval
"POST /hook?secret=s3cret\n" . t::PB::payload(exitCode => 0.5)
--- error_code: 400
--- response_body chomp
{"error":"exitCode must be an integer"}

=== TEST 32: missing exitMessage is 400
--- request eval
"POST /hook?secret=s3cret\n" . t::PB::payload(exitMessage => undef)
--- error_code: 400
--- response_body chomp
{"error":"missing exitMessage"}

=== TEST 33: exitMessage as a number is 400
--- request eval
"POST /hook?secret=s3cret\n" . t::PB::payload(exitMessage => 3)
--- error_code: 400
--- response_body chomp
{"error":"exitMessage must be a string"}

=== TEST 34: invalid UTF-8 is 400
--- request eval
"POST /hook?secret=s3cret\n{\"containerId\":1,\"agentId\":2,\"exitCode\":0,\"exitMessage\":\"fin\xffished\"}"
--- error_code: 400
--- response_body chomp
{"error":"invalid utf-8"}

=== TEST 35: a NUL escape in a string is 400
--- request eval
"POST /hook?secret=s3cret\n{\"containerId\":1,\"agentId\":2,\"exitCode\":0,\"exitMessage\":\"a\\u0000b\"}"
--- error_code: 400
--- response_body chomp
{"error":"nul character in string"}

=== TEST 36: a duplicated key is 400
--- request eval
"POST /hook?secret=s3cret\n{\"containerId\":1,\"containerId\":2,\"agentId\":2,\"exitCode\":0,\"exitMessage\":\"finished\"}"
--- error_code: 400
--- response_body chomp
{"error":"duplicate key"}

=== TEST 37: an integer out of range is 400
--- request eval
"POST /hook?secret=s3cret\n{\"containerId\":1,\"agentId\":2,\"exitCode\":123456789012345678901234567890,\"exitMessage\":\"finished\"}"
--- error_code: 400
--- response_body chomp
{"error":"number out of range"}

=== TEST 38: nesting deeper than 32 levels is 400
--- request eval
"POST /hook?secret=s3cret\n{\"containerId\":1,\"agentId\":2,\"exitCode\":0,\"exitMessage\":\"finished\",\"x\":" . ("[" x 40) . ("]" x 40) . "}"
--- error_code: 400
--- response_body chomp
{"error":"json nested too deeply"}

=== TEST 39: a body over client_max_body_size is 413, logged without the secret
--- request eval
"POST /hook?secret=s3cret\n" . t::PB::payload(resultObject => "x" x 5000)
--- log_level: info
--- error_code: 413
--- error_log
client intended to send too large body
secret=***
--- no_error_log
s3cret
[alert]

=== TEST 40: a chunked body over client_max_body_size is 413
--- raw_request eval
my $body = t::PB::payload(resultObject => "x" x 5000);
"POST /hook?secret=s3cret HTTP/1.1\r
Host: localhost\r
Connection: close\r
Transfer-Encoding: chunked\r
\r
" . sprintf("%x", length $body) . "\r\n$body\r\n0\r\n\r\n"
--- log_level: info
--- error_code: 413
--- error_log
client intended to send too large chunked body
--- no_error_log
s3cret
[alert]



=== TEST 41: the secret never appears in the module's log lines
--- log_level: info
--- request eval
["POST /hook?secret=s3cret\n[1]", "POST /hook?secret=guessed-secret\n" . t::PB::payload()]
--- more_headers
X-Trace: 1
--- error_code eval
[400, 403]
--- init
t::PB::expect(len => [0, 0]);
--- no_error_log
s3cret
guessed-secret
[alert]



=== TEST 42: a secret of another location's query is masked in the logs too
--- config
    location = /hook {
        phantombuster_webhook;
        phantombuster_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT;
        phantombuster_secret s3cret;
    }
    location = /other {
        root /nonexistent-pb-root;
    }
--- request
GET /other?a=1&secret=s3cret&b=2
--- log_level: info
--- error_code: 404
--- error_log
request: "GET /other?a=1&secret=***&b=2 HTTP/1.1"
--- no_error_log
s3cret

