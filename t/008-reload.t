# nginx -s reload and graceful quit under load, with a master and two
# workers: no crash, and no acknowledged (202) webhook missing from Redis.
#
# A plain Test::More script (Test::Nginx runs one worker and restarts nginx
# itself): it starts its own nginx from a scratch prefix, against the
# private redis-server the other suites use for outages.  Under
# TEST_NGINX_USE_VALGRIND nginx runs under valgrind like the other suites
# (valgrind follows the workers across fork).

use strict;
use warnings;

use Cwd qw(abs_path);
use File::Basename qw(dirname);
use File::Temp qw(tempdir);
use IO::Socket::INET;
use POSIX qw(WNOHANG);
use Test::More;
use Time::HiRes qw(sleep time);

my $root = dirname(dirname(abs_path(__FILE__)));
my $nginx = $ENV{TEST_NGINX_BINARY} || '/usr/sbin/nginx';
my $so = $ENV{PB_MODULE_SO}
         || "$root/build/nginx/ngx_http_phantombuster_module.so";
my $redis_port = ($ENV{PB_TEST_SPARE_REDIS_PORT}
                  || ($ENV{PB_TEST_REDIS_PORT} || 6399) + 10);
my $port = ($ENV{TEST_NGINX_PORT} || $ENV{TEST_NGINX_SERVER_PORT} || 1984)
           + 200;
my $valgrind = $ENV{TEST_NGINX_USE_VALGRIND};
my $queue = 'pbtest:reload';

plan skip_all => "$so not built" unless -f $so;

sub redis {
    open my $fh, '-|', 'redis-cli', '-p', $redis_port, @_ or die $!;
    local $/;
    my $out = <$fh>;
    close $fh;
    $out = '' unless defined $out;
    $out =~ s/\n+\z//;
    return $out;
}

system("$root/scripts/redis.sh", 'start', $redis_port) == 0
    or BAIL_OUT("cannot start redis-server on $redis_port");
# set per scenario, read by the helpers below
my ($prefix, $file);

# the whole scenario for one event method (Debian's nginx is built with
# epoll only; the Redis socket is registered level-triggered there)
sub scenario {
    my ($events) = @_;

    note("event method: $events");

    redis('FLUSHALL');

    $prefix = tempdir('pb-reload-XXXXXX', TMPDIR => 1, CLEANUP => 1);
    mkdir "$prefix/$_" for qw(conf logs);

    my $user = $< == 0 ? 'user root;' : '';

    open my $conf, '>', "$prefix/conf/nginx.conf" or die $!;
    print $conf <<~"_EOC_";
    load_module $so;
    daemon off;
    master_process on;
    worker_processes 2;
    $user
    error_log $prefix/logs/error.log info;
    pid $prefix/logs/nginx.pid;
    events { use $events; worker_connections 256; }
    http {
        access_log off;
        client_body_temp_path $prefix/body;
        server {
            listen 127.0.0.1:$port;
            location = /hook {
                phantombuster_webhook;
                phantombuster_redis 127.0.0.1:$redis_port;
                phantombuster_redis_timeout 5s;
                phantombuster_secret s3cret;
                phantombuster_queue $queue;
            }
        }
    }
    _EOC_
    close $conf;

    my @cmd = ($nginx, '-p', "$prefix/", '-c', "$prefix/conf/nginx.conf");

    if ($valgrind) {
        my @supp = -f "$root/valgrind.suppress"
                   ? ("--suppressions=$root/valgrind.suppress") : ();
        unshift @cmd, 'valgrind', '-q', '--tool=memcheck', '--leak-check=full',
                '--show-possibly-lost=no', '--num-callers=50',
                '--gen-suppressions=all', @supp;
    }

    my $master = fork();
    die "fork: $!" unless defined $master;

    if ($master == 0) {
        exec @cmd or die "exec: $!";
    }

    sub port_up {
        my $deadline = time + ($valgrind ? 30 : 5);
        while (time < $deadline) {
            return 1 if IO::Socket::INET->new(PeerAddr => "127.0.0.1:$port");
            sleep 0.05;
        }
        return 0;
    }

    ok(port_up(), 'nginx (master + 2 workers) is up') or BAIL_OUT('no nginx');

    my $n = 0;

    sub body {
        my ($cid) = @_;
        return qq({"containerId":$cid,"agentId":7,"exitCode":0,)
               . qq("exitMessage":"finished","seq":$cid});
    }

    # opens a connection and sends one webhook; the answer is read later
    sub send_hook {
        my ($cid) = @_;
        my $s = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$port")
            or return undef;
        my $b = body($cid);
        print $s "POST /hook?secret=s3cret HTTP/1.1\r\nHost: x\r\n"
                 . "Connection: close\r\nContent-Length: " . length($b)
                 . "\r\n\r\n$b";
        return $s;
    }

    sub read_answer {
        my ($s) = @_;
        return ('none', '') unless $s;
        local $/;
        my $raw = <$s>;
        close $s;
        $raw = '' unless defined $raw;
        my ($code) = $raw =~ m{^HTTP/1\.1 (\d+)};
        my ($id) = $raw =~ /"id":"(\w+)"/;
        return ($code || 'none', $id || '');
    }

    # sends webhooks from a child, 8 in flight at a time, and writes one line
    # "containerId code id" per webhook to $file
    sub load {
        my ($first, $count, $file) = @_;

        my $pid = fork();
        die "fork: $!" unless defined $pid;
        return $pid if $pid;

        open my $out, '>', $file or die $!;
        $out->autoflush(1);
        for (my $i = $first; $i < $first + $count; $i += 8) {
            my $last = $i + 7 < $first + $count ? $i + 7 : $first + $count - 1;
            my @socks = map { [$_, send_hook($_)] } $i .. $last;
            for my $p (@socks) {
                my ($code, $id) = read_answer($p->[1]);
                print $out "$p->[0] $code $id\n";
            }
            # paced, so that the reloads happen with webhooks in flight
            sleep 0.005;
        }
        close $out;
        POSIX::_exit(0);
    }

    sub results {
        my ($file) = @_;
        open my $in, '<', $file or die "$file: $!";
        my @r = map { [split ' '] } <$in>;
        close $in;
        return @r;
    }

    sub stored {
        my %ids;
        my $raw = redis('--raw', 'LRANGE', $queue, 0, -1);
        for my $line (split /\n/, $raw) {
            $ids{$1} = 1 if $line =~ /^\{"id":"(\w+)"/;
        }
        return \%ids;
    }

    sub master_pid {
        open my $fh, '<', "$prefix/logs/nginx.pid" or return 0;
        my $pid = <$fh>;
        close $fh;
        chomp $pid;
        return $pid;
    }

    # 1. reload three times while 800 webhooks are being delivered

    my $total = 1200;
    $file = "$prefix/load1.txt";
    my $child = load(1, $total, $file);

    sub answered {
        open my $in, '<', $file or return 0;
        my @l = <$in>;
        close $in;
        return scalar @l;
    }

    sub reloads {
        open my $in, '<', "$prefix/logs/error.log" or return 0;
        my $n = grep { /signal 1 \(SIGHUP\) received/ } <$in>;
        close $in;
        return $n;
    }

    # reload after 250, 500 and 750 answers while the rest is in flight, each
    # once the previous one was taken (signals sent too close together merge)
    for my $k (1 .. 3) {
        my $limit = time + 60;
        sleep 0.01 while answered() < 250 * $k && time < $limit;
        ok(waitpid($child, WNOHANG) == 0, "load still running at reload $k");
        ok(kill('HUP', $master), "reload $k sent after " . answered()
                                 . " answers");
        $limit = time + 10;
        sleep 0.01 while reloads() < $k && time < $limit;
    }

    waitpid($child, 0);

    my @r = results($file);
    is(scalar @r, $total, 'every webhook got an answer');
    my @acked = grep { $_->[1] eq '202' } @r;
    is(scalar @acked, $total, 'all webhooks were acknowledged across reloads')
        or diag(join ' ', map { $_->[1] } grep { $_->[1] ne '202' } @r);

    my $ids = stored();
    my @missing = grep { !$ids->{$_->[2]} } @acked;
    is(scalar @missing, 0, 'every acknowledged webhook is in Redis');
    is(redis('LLEN', $queue), scalar @acked, 'and nothing else');

    # 2. graceful quit while pushes are pending (Redis paused)

    redis('CLIENT', 'PAUSE', '1500', 'WRITE');
    my @pending = map { [$_, send_hook($_)] } 5001 .. 5020;
    sleep 0.4;
    ok(kill('QUIT', $master), 'graceful quit sent while 20 pushes are pending');

    my @answers = map { [$_->[0], read_answer($_->[1])] } @pending;
    my @ok = grep { $_->[1] eq '202' } @answers;
    is(scalar @ok, 20, 'the pending webhooks were answered 202 before exit')
        or diag(join ' ', map { $_->[1] } @answers);

    my $deadline = time + ($valgrind ? 60 : 10);
    my $gone = 0;
    while (time < $deadline) {
        if (waitpid($master, WNOHANG) == $master) {
            $gone = 1;
            last;
        }
        sleep 0.05;
    }
    ok($gone, 'nginx exited');

    $ids = stored();
    @missing = grep { !$ids->{$_->[2]} } @ok;
    is(scalar @missing, 0, 'every webhook acknowledged during the quit is stored');

    open my $log, '<', "$prefix/logs/error.log" or die $!;
    my @log = <$log>;
    close $log;
    my @bad = grep { /\[(alert|crit|emerg)\]|exited on signal|left in connection/ }
              @log;
    is(scalar @bad, 0, "no alert, crash or leaked connection in the log")
        or diag(@bad);
    is(scalar(grep { /signal 1 \(SIGHUP\) received.* reconfiguring/ } @log), 3,
       'nginx did reload three times');

    kill 'KILL', $master unless $gone;

    redis('DEL', $queue);
}


scenario('epoll');

done_testing();
