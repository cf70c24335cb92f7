# Configuration errors are caught when nginx starts (and by nginx -t),
# with a message that says what is wrong.

use Test::Nginx::Socket 'no_plan';
use t::PB;

no_shuffle();
run_tests();

__DATA__

=== TEST 1: a webhook location without any secret does not start
--- config
    location = /hook {
        phantombuster_webhook;
        phantombuster_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT;
    }
--- must_die
--- error_log
phantombuster_webhook location "/hook" has no secret: set "phantombuster_secret" or "phantombuster_secret_file", or disable the check explicitly with "phantombuster_secret off"



=== TEST 2: a secret at server level covers the locations below it
--- config
    phantombuster_secret s3cret;
    location = /hook {
        phantombuster_webhook;
        phantombuster_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT;
        phantombuster_queue pbtest:webhooks;
    }
--- init
t::PB::expect(len => 1);
--- request eval
"POST /hook?secret=s3cret\n" . t::PB::payload()
--- error_code: 202



=== TEST 3: phantombuster_webhook twice
--- config
    location = /hook {
        phantombuster_webhook;
        phantombuster_webhook;
        phantombuster_secret off;
    }
--- must_die
--- error_log
"phantombuster_webhook" directive is duplicate



=== TEST 4: phantombuster_webhook is a location directive
--- config
    phantombuster_webhook;
    location = /hook {
        phantombuster_secret off;
    }
--- must_die
--- error_log
"phantombuster_webhook" directive is not allowed here



=== TEST 5: phantombuster_webhook with an argument
--- config
    location = /hook {
        phantombuster_webhook on;
        phantombuster_secret off;
    }
--- must_die
--- error_log
invalid number of arguments in "phantombuster_webhook" directive



=== TEST 6: phantombuster_webhook next to another content handler
--- config
    location = /hook {
        proxy_pass http://127.0.0.1:1;
        phantombuster_webhook;
        phantombuster_secret off;
    }
--- must_die
--- error_log
conflicts with another content handler in this location



=== TEST 7: invalid Redis port
--- config
    location = /hook {
        phantombuster_webhook;
        phantombuster_redis 127.0.0.1:notaport;
        phantombuster_secret off;
    }
--- must_die
--- error_log
invalid port in redis address "127.0.0.1:notaport"



=== TEST 8: invalid db= number
--- config
    location = /hook {
        phantombuster_webhook;
        phantombuster_redis 127.0.0.1:6379 db=two;
        phantombuster_secret off;
    }
--- must_die
--- error_log
invalid redis database number "db=two"



=== TEST 9: unknown phantombuster_redis parameter
--- config
    location = /hook {
        phantombuster_webhook;
        phantombuster_redis 127.0.0.1:6379 pool=4;
        phantombuster_secret off;
    }
--- must_die
--- error_log
invalid parameter "pool=4"



=== TEST 10: missing password_file
--- config
    location = /hook {
        phantombuster_webhook;
        phantombuster_redis 127.0.0.1:6379 password_file=/nonexistent/pw;
        phantombuster_secret off;
    }
--- must_die
--- error_log
open() "/nonexistent/pw" failed



=== TEST 11: missing phantombuster_secret_file
--- config
    location = /hook {
        phantombuster_webhook;
        phantombuster_secret_file /nonexistent/secret;
    }
--- must_die
--- error_log
open() "/nonexistent/secret" failed



=== TEST 12: an empty secret file
--- config
    location = /hook {
        phantombuster_webhook;
        phantombuster_secret_file /dev/null;
    }
--- must_die
--- error_log
secret file "/dev/null" is empty



=== TEST 13: phantombuster_secret and phantombuster_secret_file together
--- config
    location = /hook {
        phantombuster_webhook;
        phantombuster_secret s3cret;
        phantombuster_secret_file $TEST_NGINX_PB_ROOT/t/data/secret.txt;
    }
--- must_die
--- error_log
"phantombuster_secret_file" directive is duplicate



=== TEST 14: an empty secret
--- config
    location = /hook {
        phantombuster_webhook;
        phantombuster_secret "";
    }
--- must_die
--- error_log
"phantombuster_secret" directive must not be empty



=== TEST 15: invalid phantombuster_dedupe
--- config
    location = /hook {
        phantombuster_webhook;
        phantombuster_secret off;
        phantombuster_dedupe soon;
    }
--- must_die
--- error_log
"phantombuster_dedupe" directive invalid value



=== TEST 16: phantombuster_max_queue 0
--- config
    location = /hook {
        phantombuster_webhook;
        phantombuster_secret off;
        phantombuster_max_queue 0;
    }
--- must_die
--- error_log
"phantombuster_max_queue" directive invalid value



=== TEST 17: phantombuster_redis_timeout 0
--- config
    location = /hook {
        phantombuster_webhook;
        phantombuster_secret off;
        phantombuster_redis_timeout 0;
    }
--- must_die
--- error_log
value must be between 1 and 3600000



=== TEST 18: an empty queue name
--- config
    location = /hook {
        phantombuster_webhook;
        phantombuster_secret off;
        phantombuster_queue "";
    }
--- must_die
--- error_log
"phantombuster_queue" directive must not be empty



=== TEST 19: a Redis host name that does not resolve
--- config
    location = /hook {
        phantombuster_webhook;
        phantombuster_secret off;
        phantombuster_redis no-such-host.invalid:6379;
    }
--- must_die
--- error_log
host not found in redis address "no-such-host.invalid:6379"



=== TEST 20: a unix: address that is too long
--- config eval
"    location = /hook {
        phantombuster_webhook;
        phantombuster_secret off;
        phantombuster_redis unix:/" . ("x" x 200) . ";
    }"
--- must_die
--- error_log
too long path in the unix domain socket in redis address



=== TEST 21: the module loads and stays quiet where it is not used
--- config
    location = /plain {
        return 200 "ok\n";
    }
--- request
GET /plain
--- response_body
ok
--- no_error_log
phantombuster
[error]



=== TEST 22: phantombuster_redis twice
--- config
    location = /hook {
        phantombuster_webhook;
        phantombuster_secret off;
        phantombuster_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT;
        phantombuster_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT;
    }
--- must_die
--- error_log
"phantombuster_redis" directive is duplicate



=== TEST 23: phantombuster_queue twice
--- config
    location = /hook {
        phantombuster_webhook;
        phantombuster_secret off;
        phantombuster_queue pbtest:a;
        phantombuster_queue pbtest:b;
    }
--- must_die
--- error_log
"phantombuster_queue" directive is duplicate



=== TEST 24: a queue name with a control character
--- config
    location = /hook {
        phantombuster_webhook;
        phantombuster_secret off;
        phantombuster_queue "pbtest\tq";
    }
--- must_die
--- error_log
"phantombuster_queue" directive must not contain control characters



=== TEST 25: a queue name that is not UTF-8
--- config eval
"    location = /hook {
        phantombuster_webhook;
        phantombuster_secret off;
        phantombuster_queue pbtest:\xff\xfe;
    }"
--- must_die
--- error_log
"phantombuster_queue" directive must be valid UTF-8



=== TEST 26: phantombuster_secret twice
--- config
    location = /hook {
        phantombuster_webhook;
        phantombuster_secret one;
        phantombuster_secret two;
    }
--- must_die
--- error_log
"phantombuster_secret" directive is duplicate



=== TEST 27: a secret longer than nginx's 4096-byte token is refused
--- config eval
"    location = /hook {
        phantombuster_webhook;
        phantombuster_secret " . ("s" x 4097) . ";
    }"
--- must_die
--- error_log
too long parameter "ssssssssss..." started



=== TEST 28: an empty secret file name
--- config
    location = /hook {
        phantombuster_webhook;
        phantombuster_secret_file "";
    }
--- must_die
--- error_log
empty secret file name



=== TEST 29: a secret file larger than 4096 bytes
--- config
    location = /hook {
        phantombuster_webhook;
        phantombuster_secret_file $TEST_NGINX_PB_ROOT/t/PB.pm;
    }
--- must_die
--- error_log eval
qr{secret file "[^"]*/t/PB\.pm" is too large}



=== TEST 30: a directory as the secret file cannot be read
--- config
    location = /hook {
        phantombuster_webhook;
        phantombuster_secret_file $TEST_NGINX_PB_ROOT/t/data;
    }
--- must_die
--- error_log eval
qr{read\(\) "[^"]*/t/data" failed \(21: Is a directory\)}



=== TEST 31: phantombuster_dedupe twice
--- config
    location = /hook {
        phantombuster_webhook;
        phantombuster_secret off;
        phantombuster_dedupe 1h;
        phantombuster_dedupe off;
    }
--- must_die
--- error_log
"phantombuster_dedupe" directive is duplicate



=== TEST 32: phantombuster_max_queue twice
--- config
    location = /hook {
        phantombuster_webhook;
        phantombuster_secret off;
        phantombuster_max_queue 10;
        phantombuster_max_queue off;
    }
--- must_die
--- error_log
"phantombuster_max_queue" directive is duplicate



=== TEST 33: phantombuster_admin_token twice
--- config
    location = /admin {
        phantombuster_admin;
        phantombuster_admin_token one;
        phantombuster_admin_token two;
    }
--- must_die
--- error_log
"phantombuster_admin_token" directive is duplicate



=== TEST 34: phantombuster_status twice
--- config
    location = /status {
        phantombuster_status;
        phantombuster_status;
    }
--- must_die
--- error_log
"phantombuster_status" directive is duplicate



=== TEST 35: the variables are empty in a location the module does not handle
--- config
    location = /plain {
        return 200 "[$phantombuster_result][$phantombuster_container_id]\n";
    }
--- request
GET /plain
--- response_body
[][]
--- no_error_log
[error]



=== TEST 36: a Redis user without a password file
--- config
    location = /hook {
        phantombuster_webhook;
        phantombuster_redis 127.0.0.1:6379 user=pb-acl;
        phantombuster_secret off;
    }
--- must_die
--- error_log
redis "user=" needs "password_file="
