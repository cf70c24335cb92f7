# phantombuster_admin: admin commands handed to pb-worker through Redis.
# Refused without a configured token (nginx does not start), without a
# token or with a wrong one (401, 403: nothing pushed); a valid command is
# pushed in the worker's format (docs/pbctl.md) and answered 202 with its
# request id; GET ?result= returns the worker's answer.

use Test::Nginx::Socket 'no_plan';
use t::PB;
use t::PBStatus;

$ENV{TEST_NGINX_TOKEN_FILE} = t::PB::root() . '/t/data/admin-token.txt';

sub main::commands {
    return map { JSON::PP->new->decode($_) }
           t::PB::redis_list('phantombuster:control:commands', $t::PBStatus::Db);
}

t::PBStatus::defaults(config => <<'EOF');
    location = /admin {
        phantombuster_admin;
        phantombuster_admin_token s3cret-token;
        phantombuster_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT db=$TEST_NGINX_STATUS_DB;
    }
EOF

no_shuffle();
run_tests();

__DATA__

=== TEST 1: an admin location without a token does not start
--- config
    location = /admin {
        phantombuster_admin;
    }
--- must_die
--- error_log
phantombuster_admin location "/admin" has no token: set "phantombuster_admin_token" or "phantombuster_admin_token_file"



=== TEST 2: no token, a wrong one, a longer one: refused, nothing pushed
--- init
t::PBStatus::flush();
t::PB::expect(db => $t::PBStatus::Db, queue => 'phantombuster:control:commands',
              len => [0, 0, 0, 0]);
--- request eval
["POST /admin\n{\"cmd\":\"pause\"}",
 "POST /admin\n{\"cmd\":\"pause\"}",
 "POST /admin\n{\"cmd\":\"pause\"}",
 "GET /admin?result=abc"]
--- more_headers eval
["", "X-Phantombuster-Token: s3cret-tokem", "X-Phantombuster-Token: s3cret-token2",
 "X-Phantombuster-Token: wrong"]
--- error_code eval
[401, 403, 403, 403]
--- response_body eval
['{"error":"missing token"}', '{"error":"invalid token"}',
 '{"error":"invalid token"}', '{"error":"invalid token"}']
--- no_error_log
[error]



=== TEST 3: a retry is pushed in the worker's format, 202 with the request id
--- init
t::PBStatus::flush();
t::PB::expect(db => $t::PBStatus::Db, queue => 'phantombuster:control:commands',
              len => 1, check => sub {
    my ($block, $body) = @_;
    my ($id) = $body =~ /^\{"status":"accepted","request_id":"([0-9a-f]{32})"\}$/;
    Test::More::ok($id, $block->name . ' - the answer names the request');
    Test::More::is_deeply([main::commands()],
                          [{ cmd => 'dlq_retry', id => 'job-1.a:b_c',
                             request_id => $id, by => 'admin:127.0.0.1' }],
                          $block->name . ' - only the known fields are passed on');
});
--- config
    location = /admin {
        phantombuster_admin;
        phantombuster_admin_token_file $TEST_NGINX_TOKEN_FILE;
        phantombuster_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT db=$TEST_NGINX_STATUS_DB;
    }
--- request
POST /admin
{"cmd":"dlq_retry","id":"job-1.a:b_c","by":"someone else","extra":[1]}
--- more_headers
X-Phantombuster-Token: s3cret-token
--- error_code: 202
--- response_headers
Content-Type: application/json
--- no_error_log
[error]



=== TEST 4: every command the page sends
--- init
t::PBStatus::flush();
t::PB::expect(db => $t::PBStatus::Db, queue => 'phantombuster:control:commands',
              len => [1, 2, 3, 4, 5], check => sub {
    my ($block) = @_;
    Test::More::is_deeply([map { $_->{cmd} } reverse main::commands()],
                          [qw(pause resume restart dlq_retry_all drain)],
                          $block->name . ' - in order');
});
--- request eval
[map { "POST /admin\n{\"cmd\":\"$_\"}" } qw(pause resume restart dlq_retry_all drain)]
--- more_headers
X-Phantombuster-Token: s3cret-token
--- error_code eval
[202, 202, 202, 202, 202]
--- no_error_log
[error]



=== TEST 5: bad commands: 400 with the reason, nothing pushed
--- init
t::PBStatus::flush();
t::PB::expect(db => $t::PBStatus::Db, queue => 'phantombuster:control:commands',
              len => [0, 0, 0, 0, 0, 0]);
--- request eval
["POST /admin\n{\"cmd\":\"dlq_purge\"}",
 "POST /admin\n{\"cmd\":\"dlq_retry\"}",
 "POST /admin\n{\"cmd\":\"dlq_retry\",\"id\":\"a b\"}",
 "POST /admin\n[1]",
 "POST /admin\n{\"cmd\":",
 "POST /admin\n{\"cmd\":\"pause\",\"cmd\":\"resume\"}"]
--- more_headers
X-Phantombuster-Token: s3cret-token
--- error_code eval
[400, 400, 400, 400, 400, 400]
--- response_body eval
['{"error":"unknown cmd (want dlq_retry, dlq_retry_all, pause, resume, drain or restart)"}',
 '{"error":"dlq_retry needs the id of a job"}',
 '{"error":"dlq_retry needs the id of a job"}',
 '{"error":"command must be a json object"}',
 '{"error":"invalid json"}',
 '{"error":"invalid json"}']
--- no_error_log
[error]



=== TEST 6: the worker's answer: 404 until it is there, then as stored
--- init
t::PBStatus::flush();
t::PBStatus::redis('SET', 'phantombuster:control:result:r-17',
                   '{"ok":true,"result":{"job_id":"job-42","retried":true}}');
--- request eval
["GET /admin?result=r-18", "GET /admin?result=r-17", "GET /admin?result=a%20b",
 "GET /admin"]
--- more_headers
X-Phantombuster-Token: s3cret-token
--- error_code eval
[404, 200, 400, 400]
--- response_body eval
['{"error":"no result yet"}',
 '{"ok":true,"result":{"job_id":"job-42","retried":true}}',
 '{"error":"want ?result=<request id>"}',
 '{"error":"want ?result=<request id>"}']
--- no_error_log
[error]



=== TEST 7: behind auth_basic: the user is who sent it; the token inherited
--- init
t::PBStatus::flush();
t::PB::expect(db => $t::PBStatus::Db, queue => 'phantombuster:control:commands',
              len => 1, check => sub {
    my ($block) = @_;
    Test::More::is((main::commands())[0]{by}, 'admin:alice',
                   $block->name . ' - by the auth_basic user');
});
--- user_files
>>> htpasswd
alice:{PLAIN}wonderland
--- config
    phantombuster_admin_token s3cret-token;

    location = /admin {
        auth_basic "PhantomBuster admin";
        auth_basic_user_file $TEST_NGINX_SERVER_ROOT/html/htpasswd;
        phantombuster_admin;
        phantombuster_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT db=$TEST_NGINX_STATUS_DB;
    }
--- request eval
["POST /admin\n{\"cmd\":\"pause\"}", "POST /admin\n{\"cmd\":\"pause\"}"]
--- more_headers eval
["X-Phantombuster-Token: s3cret-token",
 "X-Phantombuster-Token: s3cret-token\nAuthorization: Basic YWxpY2U6d29uZGVybGFuZA=="]
--- error_code eval
[401, 202]



=== TEST 8: Redis down: 503 JSON, the command is not taken
--- config
    location = /admin {
        phantombuster_admin;
        phantombuster_admin_token s3cret-token;
        phantombuster_redis 127.0.0.1:1;
    }
--- request
POST /admin
{"cmd":"pause"}
--- more_headers
X-Phantombuster-Token: s3cret-token
--- error_code: 503
--- response_body chomp
{"error":"queue unavailable"}
--- no_error_log
[alert]
[crit]



=== TEST 9: a command body too large, a method it does not take
--- request eval
["POST /admin\n{\"cmd\":\"pause\",\"pad\":\"" . ('x' x 5000) . "\"}",
 "DELETE /admin"]
--- more_headers
X-Phantombuster-Token: s3cret-token
--- error_code eval
[413, 405]
--- response_headers eval
["Content-Type: application/json", "Allow: GET, HEAD, POST"]
--- response_body eval
['{"error":"command too large"}', '{"error":"method not allowed"}']



=== TEST 10: an empty token is refused by the configuration
--- config
    location = /admin {
        phantombuster_admin;
        phantombuster_admin_token "";
    }
--- must_die
--- error_log
"phantombuster_admin_token" directive must not be empty
