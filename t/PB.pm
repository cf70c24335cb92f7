package t::PB;

# Helpers shared by the module's Test::Nginx suites (t/0*.t):
#
#   use Test::Nginx::Socket 'no_plan';
#   use t::PB;
#
# - every block gets `load_module <the built .so>;` in its main_config and
#   starts from a Redis where no `pbtest:*` key exists;
# - a block's `--- init` may call expect(...) to state what the Redis
#   list must hold once the block's requests are answered; the check runs
#   from add_response_body_check, against the real redis-server, and a
#   block whose expectation was never checked fails;
# - payload(...) builds webhook bodies, redis(...) runs redis-cli.
#
# Only standard Test::Nginx::Socket features are used, so the suites run
# under the CPAN Test::Nginx and under the minimal runner in t/lib alike.

use strict;
use warnings;

use Cwd qw(abs_path);
use File::Basename qw(dirname);
use JSON::PP ();
use POSIX ();
use Time::HiRes ();
use Test::More ();
use Test::Nginx::Socket ();

use Exporter 'import';

# called fully qualified from the suites (t::PB::payload(), ...): a
# block's init and eval sections run in other packages.
our @EXPORT = ();

my $root = dirname(dirname(abs_path(__FILE__)));

our $RedisPort = $ENV{PB_TEST_REDIS_PORT} || 6399;
our $Module = $ENV{PB_MODULE_SO}
              || "$root/build/nginx/ngx_http_phantombuster_module.so";

# a second, private redis-server for the blocks that stop and restart it
our $SpareRedisPort = $ENV{PB_TEST_SPARE_REDIS_PORT} || $RedisPort + 10;

# an extra port for blocks that need a second listener (HTTP/2, fake Redis)
our $ExtraPort = $ENV{PB_TEST_EXTRA_PORT}
                 || ($ENV{TEST_NGINX_PORT} || $ENV{TEST_NGINX_SERVER_PORT}
                     || 1984) + 100;

# private redis-servers started by blocks that need them: one on a unix
# socket, one with a password (see private_redis)
our $UnixSocket = "/tmp/pb/redis-unix-$RedisPort.sock";
our $AuthRedisPort = $SpareRedisPort + 1;
our $AuthPassword = 'pb-test-password';

$ENV{TEST_NGINX_PB_UNIX_SOCKET} = $UnixSocket;
$ENV{TEST_NGINX_AUTH_REDIS_PORT} = $AuthRedisPort;
$ENV{TEST_NGINX_REDIS_PORT} = $RedisPort;
$ENV{TEST_NGINX_SPARE_REDIS_PORT} = $SpareRedisPort;
$ENV{TEST_NGINX_EXTRA_PORT} = $ExtraPort;
$ENV{TEST_NGINX_PB_ROOT} = $root;

# set by a block's init, read by its checks (elapsed times, side results)
our $T0;
our %Stash;

my $json = JSON::PP->new->canonical->allow_nonref;

# a block's expectation: { queue, len, check, after, name, done }
our $Expect;
our $CurrentName = '';


sub root { $root }
sub redis_port { $RedisPort }
sub module_path { $Module }
sub json { $json }


# where redis-cli connects for a "port": a number, 'unix' or 'auth'
sub redis_target {
    my ($port) = @_;

    return ('-s', $UnixSocket) if $port eq 'unix';
    return ('-p', $AuthRedisPort, '--no-auth-warning', '-a', $AuthPassword)
        if $port eq 'auth';
    return ('-p', $port);
}


sub redis {
    my @args = @_;
    my $port = $RedisPort;

    if (@args && $args[0] =~ /^-p$/) {
        (undef, $port) = splice @args, 0, 2;
    }

    open my $fh, '-|', 'redis-cli', redis_target($port), '--no-raw', @args
        or die "cannot run redis-cli: $!";
    local $/;
    my $out = <$fh>;
    close $fh;

    $out = '' unless defined $out;
    $out =~ s/\n+\z//;

    return $out;
}


# how many pushes Redis took (EXEC, EVALSHA, EVAL) since CONFIG RESETSTAT
sub push_calls {
    my $info = redis('INFO', 'commandstats');
    my $n = 0;

    $n += $1 while $info =~ /cmdstat_(?:exec|eval|evalsha):calls=(\d+)/g;

    return $n;
}


# raw values of a list, head first (as LRANGE returns them)
sub redis_list {
    my ($key, $db, $port) = @_;

    open my $fh, '-|', 'redis-cli', redis_target($port || $RedisPort),
        '-n', $db || 0, '--raw', '-d', "\x1e", 'LRANGE', $key, '0', '-1'
        or die "cannot run redis-cli: $!";
    local $/;
    my $out = <$fh>;
    close $fh;

    return () if !defined $out || $out eq '' || $out eq "\n";

    $out =~ s/\n\z//;

    return split /\x1e/, $out, -1;
}


# envelopes in FIFO order (tail first: the order a consumer takes them)
sub envelopes {
    my ($key, $db, $port) = @_;

    return map { $json->decode($_) } reverse redis_list($key, $db, $port);
}


# the test databases the suites use: 0 and 3 (db=N tests)
sub reset_keys {
    for my $db (0, 3) {
        my $keys = redis('-n', $db, '--raw', 'KEYS', 'pbtest:*');

        for my $k (grep { length } split /\n/, $keys) {
            redis('-n', $db, 'DEL', $k);
        }
    }
}


sub redis_start {
    my $port = shift || $RedisPort;

    system("$root/scripts/redis.sh", 'start', $port) == 0
        or die "cannot start redis on $port";
}


sub redis_stop {
    my $port = shift || $RedisPort;

    system("$root/scripts/redis.sh", 'stop', $port) == 0
        or die "cannot stop redis on $port";
}


sub error_log_file {
    my $f = $Test::Nginx::Util::ErrLogFile;

    return $f if defined $f && length $f;

    return ($ENV{TEST_NGINX_SERVROOT} || "$root/t/servroot")
           . "/logs/error.log";
}


# the number of error.log lines (since nginx started) matching a regex
sub log_count {
    my ($re) = @_;

    open my $fh, '<', error_log_file() or return 0;
    my $n = grep { /$re/ } <$fh>;
    close $fh;

    return $n;
}


# starts a throwaway redis-server: 'unix' (unix socket only) or 'auth'
# (TCP, requirepass); empty, no persistence
sub private_redis {
    my ($kind) = @_;

    my $dir = "/tmp/pb/redis-$kind-$RedisPort";
    system('mkdir', '-p', $dir);

    my @args = $kind eq 'unix'
               ? ('--port', 0, '--unixsocket', $UnixSocket)
               : ('--port', $AuthRedisPort, '--bind', '127.0.0.1',
                  '--requirepass', $AuthPassword);

    private_redis_stop($kind);

    system('redis-server', @args, '--save', '', '--appendonly', 'no',
           '--dir', $dir, '--daemonize', 'yes',
           '--pidfile', "$dir/redis.pid", '--logfile', "$dir/redis.log") == 0
        or die "cannot start the $kind redis-server";

    for (1 .. 100) {
        return if redis('-p', $kind, 'PING') =~ /PONG/;
        Time::HiRes::sleep(0.05);
    }

    die "the $kind redis-server did not start";
}


sub private_redis_stop {
    my ($kind) = @_;

    open my $saved, '>&', \*STDERR or die $!;
    open STDERR, '>', '/dev/null' or die $!;
    my $out = redis('-p', $kind, 'SHUTDOWN', 'NOSAVE');
    open STDERR, '>&', $saved or die $!;
    Time::HiRes::sleep(0.1) if $out eq '';
}


sub nginx_pid {
    my $f = error_log_file();
    $f =~ s{/error\.log$}{/nginx.pid};

    open my $fh, '<', $f or return 0;
    my $pid = <$fh>;
    close $fh;

    return 0 unless defined $pid;
    chomp $pid;

    return $pid;
}


# open descriptors of the (single) nginx process
sub fd_count {
    my $pid = nginx_pid() or return -1;

    opendir my $d, "/proc/$pid/fd" or return -1;
    my $n = grep { /^\d+$/ } readdir $d;
    closedir $d;

    return $n;
}


# A fake Redis on 127.0.0.1:$port, for one connection: it waits until the
# first EXEC has arrived, then answers everything in a single write: a
# $big-byte bulk string (for SCRIPT LOAD) and the replies to a push's
# MULTI, SET, LPUSH and EXEC, and keeps the connection open.  hiredis reads
# 16 KiB per call, so the EXEC's reply is only seen if the adapter is told
# again that the socket is readable.
sub fake_redis_burst {
    my ($port, $big) = @_;

    require IO::Socket::INET;

    my $l = IO::Socket::INET->new(LocalAddr => '127.0.0.1',
                                  LocalPort => $port, Listen => 5,
                                  ReuseAddr => 1)
        or die "fake redis: cannot listen on $port: $!";

    my $pid = fork();
    die "fork: $!" unless defined $pid;

    if ($pid) {
        close $l;
        return $pid;
    }

    my $c = $l->accept or POSIX::_exit(1);
    my $buf = '';

    while ($buf !~ /EXEC/) {
        my $n = sysread($c, $buf, 65536, length $buf);
        POSIX::_exit(1) unless $n;
    }

    my $out = '$' . $big . "\r\n" . ('x' x $big) . "\r\n"
              . "+OK\r\n+QUEUED\r\n+QUEUED\r\n*2\r\n+OK\r\n:1\r\n";

    while (length $out) {
        my $n = syswrite($c, $out);
        POSIX::_exit(1) unless defined $n;
        substr($out, 0, $n, '');
    }

    sleep 30;
    POSIX::_exit(0);
}


sub server_port {
    return $ENV{TEST_NGINX_SERVER_PORT} || $ENV{TEST_NGINX_PORT} || 1984;
}


# Sends every request before reading any answer, so that nginx handles
# them concurrently (their pushes share the worker's Redis connection).
# $path is one path, or an array of paths taken in turn.  With
# one_iteration => 1 the connections are opened first and every request is
# written while nginx (a single process under Test::Nginx) is stopped, so
# that one event loop iteration reads them all.
# Returns [status, body, headers] per request, in the order given.
sub concurrent {
    my ($path, $bodies, %opt) = @_;

    require IO::Socket::INET;

    my $port = $opt{port} || server_port();
    my $paths = ref $path ? $path : [$path];
    my (@socks, $pid);
    my $fds = $opt{one_iteration} ? fd_count() : 0;

    for (@$bodies) {
        my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                      PeerPort => $port, Proto => 'tcp')
            or die "cannot connect to 127.0.0.1:$port: $!";

        $s->autoflush(1);
        push @socks, $s;
    }

    if ($opt{one_iteration}) {
        # nginx accepts one connection per iteration: wait until it holds
        # them all, or a late one would be read in an iteration of its own
        my $deadline = Time::HiRes::time() + 10;

        Time::HiRes::sleep(0.02)
            while fd_count() < $fds + @socks
                  && Time::HiRes::time() < $deadline;

        $pid = nginx_pid() or die "no nginx pid";
        kill 'STOP', $pid;
    }

    for my $i (0 .. $#$bodies) {
        my ($s, $body) = ($socks[$i], $bodies->[$i]);

        print $s "POST $paths->[$i % @$paths] HTTP/1.1\r\nHost: localhost\r\n"
                 . "Connection: close\r\n"
                 . "Content-Type: application/json\r\n"
                 . "Content-Length: " . length($body) . "\r\n\r\n$body";
    }

    kill 'CONT', $pid if $pid;

    my @res;

    for my $s (@socks) {
        local $/;
        my $raw = <$s>;
        $raw = '' unless defined $raw;
        close $s;

        my ($code) = $raw =~ m{^HTTP/1\.\d (\d+)};
        my ($head, $body) = split /\r\n\r\n/, $raw, 2;
        push @res, [$code || 0, defined $body ? $body : '', $head || ''];
    }

    return @res;
}


sub wait_port {
    my ($port, $timeout) = @_;

    require IO::Socket::INET;

    my $deadline = Time::HiRes::time() + ($timeout || 5);

    while (Time::HiRes::time() < $deadline) {
        my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                      PeerPort => $port, Proto => 'tcp');
        return 1 if $s;
        Time::HiRes::sleep(0.05);
    }

    return 0;
}


my %sample = (
    agentId        => 4717388215573025,
    agentName      => 'LinkedIn Profile Scraper - sales leads Q3',
    containerId    => 7583362109412873,
    script         => 'LinkedIn Profile Scraper.js',
    scriptOrg      => 'phantombuster',
    branch         => 'master',
    launchDuration => 1843,
    runDuration    => 127406,
    exitCode       => 0,
    exitMessage    => 'finished',
    resultObject   => '[{"profileUrl":"https://www.linkedin.com/in/jane-doe/"}]',
);


sub sample { return {%sample} }


# a JSON body: the sample with fields overridden (undef deletes a field)
sub payload {
    my %over = @_;
    my %p = %sample;

    for my $k (keys %over) {
        if (defined $over{$k}) {
            $p{$k} = $over{$k};
        } else {
            delete $p{$k};
        }
    }

    return $json->encode(\%p);
}


sub curl {
    my @args = @_;

    open my $fh, '-|', 'curl', '-sS', @args or die "cannot run curl: $!";
    local $/;
    my $out = <$fh>;
    close $fh;

    return defined $out ? $out : '';
}


# expect(len => N | [N0, N1, ...], queue => KEY, check => CODE,
#           after => REQ_IDX)
sub expect {
    my %e = @_;

    $e{queue} ||= 'pbtest:webhooks';
    $e{done} = 0;
    $e{name} = $CurrentName;

    $Expect = \%e;
}


sub number_of_requests {
    my ($block) = @_;

    # a raw_request array is the pieces of one request
    for my $sec (qw(pipelined_requests request)) {
        my $v = eval { $block->$sec };
        next unless defined $v;
        return scalar @$v if ref $v eq 'ARRAY';
        return 1;
    }

    return 1;
}


sub check_unconsumed {
    if ($Expect && !$Expect->{done}) {
        Test::More::fail("$Expect->{name} - the Redis expectation was "
                         . "never checked");
    }

    $Expect = undef;
}


Test::Nginx::Socket::add_block_preprocessor(sub {
    my ($block) = @_;

    check_unconsumed();

    $CurrentName = $block->name;

    my $main = $block->main_config;
    $main = '' unless defined $main;
    $block->set_value('main_config', "load_module $Module;\n$main");

    reset_keys();
});


Test::Nginx::Socket::add_response_body_check(sub {
    my ($block, $body, $req_idx, $repeated_req_idx, $dry_run) = @_;

    my $e = $Expect or return;

    if ($dry_run) {
        $e->{done} = 1;
        return;
    }

    my $last = number_of_requests($block) - 1;
    my $want;

    if (ref $e->{len} eq 'ARRAY') {
        $want = $e->{len}[$req_idx];

    } else {
        my $after = defined $e->{after} ? $e->{after} : $last;
        return if $req_idx != $after;
        $want = $e->{len};
    }

    if (defined $want) {
        my $len = redis('-p', $e->{port} || $RedisPort, '-n', $e->{db} || 0,
                        'LLEN', $e->{queue});
        $len =~ s/^\(integer\) //;

        Test::More::is($len, $want, $block->name
                       . " - redis list $e->{queue} holds $want "
                       . "(req $req_idx)");
    }

    if ($e->{check} && $req_idx == (defined $e->{after} ? $e->{after}
                                                         : $last))
    {
        $e->{check}->($block, $body, $req_idx);
    }

    $e->{each}->($req_idx) if $e->{each};

    $e->{done} = 1 if $req_idx >= $last || defined $e->{after};
});


# the embedded TCP servers of Test::Nginx are forked children: only the
# process that loaded this file reports
my $pid = $$;

END {
    check_unconsumed() if $$ == $pid;
}


1;
