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

$ENV{TEST_NGINX_REDIS_PORT} = $RedisPort;
$ENV{TEST_NGINX_PB_ROOT} = $root;

my $json = JSON::PP->new->canonical->allow_nonref;

# a block's expectation: { queue, len, check, after, name, done }
our $Expect;
our $CurrentName = '';


sub root { $root }
sub redis_port { $RedisPort }
sub module_path { $Module }
sub json { $json }


sub redis {
    my @args = @_;

    open my $fh, '-|', 'redis-cli', '-p', $RedisPort, '--no-raw', @args
        or die "cannot run redis-cli: $!";
    local $/;
    my $out = <$fh>;
    close $fh;

    $out = '' unless defined $out;
    $out =~ s/\n+\z//;

    return $out;
}


# raw values of a list, head first (as LRANGE returns them)
sub redis_list {
    my ($key) = @_;

    open my $fh, '-|', 'redis-cli', '-p', $RedisPort, '--raw', '-d', "\x1e",
        'LRANGE', $key, '0', '-1'
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
    my ($key) = @_;

    return map { $json->decode($_) } reverse redis_list($key);
}


sub reset_keys {
    my $keys = redis('--raw', 'KEYS', 'pbtest:*');

    for my $k (grep { length } split /\n/, $keys) {
        redis('DEL', $k);
    }
}


sub redis_start {
    system("$root/scripts/redis.sh", 'start', $RedisPort) == 0
        or die "cannot start redis on $RedisPort";
}


sub redis_stop {
    system("$root/scripts/redis.sh", 'stop', $RedisPort) == 0
        or die "cannot stop redis on $RedisPort";
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

    for my $sec (qw(pipelined_requests request raw_request)) {
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
        my $len = redis('LLEN', $e->{queue});
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

    $e->{done} = 1 if $req_idx >= $last || defined $e->{after};
});


END {
    check_unconsumed();
}


1;
