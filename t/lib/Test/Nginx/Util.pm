package Test::Nginx::Util;

# Minimal, dependency-free stand-in for OpenResty's Test::Nginx::Util.
#
# It only exists because CPAN is unreachable and Debian 12 does not package
# Test::Nginx (see t/lib/README.md).  Everything here mirrors the observable
# behaviour of the real module (config layout, env handling, block format,
# test counting) so that suites written for the real one run unchanged.
# Only core Perl modules are used.

use strict;
use warnings;

use Exporter 'import';
use POSIX qw(:sys_wait_h SIGQUIT SIGKILL SIGTERM);
use File::Path qw(make_path remove_tree);
use File::Spec ();
use File::Temp ();
use IO::Socket::INET ();
use IO::Socket::UNIX ();
use IO::Select ();
use List::Util ();
use Time::HiRes qw(sleep time);
use Test::More ();

our @EXPORT = qw(
    repeat_each no_shuffle env_to_nginx workers master_on master_off
    master_process_enabled log_level no_long_string no_root_location
    server_port server_port_for_client server_root html_dir server_name
    server_addr timeout worker_connections config_preamble
    check_accum_error_log add_block_preprocessor add_cleanup_handler
    add_test_cleanup_handler bail_out is_str parse_time parse_headers
    expand_env_in_text error_log_data access_log_data trim
    $ServerName $ServerAddr $ServerPort $ServerPortForClient $NoLongString
    $RepeatEach
);

# ---------------------------------------------------------------------------
# Settings: same env variables and defaults as the real module.
# ---------------------------------------------------------------------------
our $Verbose         = $ENV{TEST_NGINX_VERBOSE};
our $NginxBinary     = $ENV{TEST_NGINX_BINARY} || 'nginx';
our $RepeatEach      = 1;
our $NoShuffle       = $ENV{TEST_NGINX_NO_SHUFFLE} || 0;
our $Workers         = 1;
our $WorkerConnections = 64;
our $LogLevel        = $ENV{TEST_NGINX_LOG_LEVEL} || 'debug';
our $MasterProcessEnabled = $ENV{TEST_NGINX_MASTER_PROCESS} || 'off';
our $Timeout         = $ENV{TEST_NGINX_TIMEOUT} || 3;
our $TestNginxSleep  = $ENV{TEST_NGINX_SLEEP} || 0.015;
our $UseValgrind     = $ENV{TEST_NGINX_USE_VALGRIND};
our $LoadModules     = $ENV{TEST_NGINX_LOAD_MODULES};
our $CheckAccumErrLog = $ENV{TEST_NGINX_CHECK_ACCUM_ERR_LOG};
our $Randomize       = $ENV{TEST_NGINX_RANDOMIZE};
our $ServerAddr      = '127.0.0.1';
our $ServerName      = 'localhost';
our $ServerPort      = $ENV{TEST_NGINX_SERVER_PORT} || $ENV{TEST_NGINX_PORT} || 1984;
our $ServerPortForClient = $ENV{TEST_NGINX_CLIENT_PORT} || $ServerPort;
our $NoRootLocation  = 0;
our $NoLongString;
our $ConfigPreamble  = '';
our (@EnvToNginx, @BlockPreprocessors, @CleanupHandlers, @TestCleanupHandlers);

our $MainPid = $$;   # END/cleanup must only act in the test process itself

if ($Randomize) {
    $ServerPort = $ServerPortForClient = gen_rand_port()
        or die "Cannot find a free port for TEST_NGINX_RANDOMIZE\n";
}

our $ServRoot = $Randomize ? File::Spec->rel2abs("t/servroot_$ServerPort")
              : ($ENV{TEST_NGINX_SERVROOT} || File::Spec->rel2abs('t/servroot'));
$ENV{TEST_NGINX_SERVER_ROOT} = $ServRoot;
our $LogDir     = "$ServRoot/logs";
our $ErrLogFile = "$LogDir/error.log";
our $AccLogFile = "$LogDir/access.log";
our $HtmlDir    = "$ServRoot/html";
our $ConfDir    = "$ServRoot/conf";
our $ConfFile   = "$ConfDir/nginx.conf";
our $PidFile    = "$LogDir/nginx.pid";
$ENV{TEST_NGINX_HTML_DIR} ||= $HtmlDir;

# Simple getter/setter helpers, exported like the real ones.
sub repeat_each      { $RepeatEach = shift if @_; $RepeatEach }
sub no_shuffle ()    { $NoShuffle = 1 }
sub workers          { $Workers = shift if @_; $Workers }
sub worker_connections { $WorkerConnections = shift if @_; $WorkerConnections }
sub log_level        { $LogLevel = shift if @_; $LogLevel }
sub master_on ()     { $MasterProcessEnabled = 'on' }
sub master_off ()    { $MasterProcessEnabled = 'off' }
sub master_process_enabled { $MasterProcessEnabled = $_[0] ? 'on' : 'off' if @_; $MasterProcessEnabled }
sub no_long_string () { $NoLongString = 1 }
sub no_root_location () { $NoRootLocation = 1 }
sub server_port      { $ServerPort = shift if @_; $ServerPort }
sub server_port_for_client { $ServerPortForClient = shift if @_; $ServerPortForClient }
sub server_name      { $ServerName = shift if @_; $ServerName }
sub server_addr      { $ServerAddr = shift if @_; $ServerAddr }
sub server_root ()   { $ServRoot }
sub html_dir ()      { $HtmlDir }
sub timeout          { $Timeout = shift if @_; $Timeout }
sub config_preamble  { $ConfigPreamble = shift }
sub check_accum_error_log () { $CheckAccumErrLog = 1 }
# The real one unshifts, so the preprocessor added last runs first.
sub add_block_preprocessor (&) { unshift @BlockPreprocessors, shift }
sub add_cleanup_handler ($)      { unshift @CleanupHandlers, shift }
sub add_test_cleanup_handler ($) { unshift @TestCleanupHandlers, shift }

sub env_to_nginx {
    for my $v (@_) {
        Carp::croak("env_to_nginx: bad argument value: $v") if $v !~ /^[A-Za-z_]/ || $v =~ /\n/;
        push @EnvToNginx, $v;
    }
}

sub bail_out {
    cleanup();
    Test::More::BAIL_OUT(join '', @_);
}

# Like the real is_str: a qr// expectation means like(), otherwise is().
sub is_str {
    my ($got, $expected, $desc) = @_;
    local $Test::Builder::Level = $Test::Builder::Level + 1;
    return Test::More::like($got, $expected, $desc) if ref $expected eq 'Regexp';
    return Test::More::is($got, $expected, $desc) if $NoLongString;
    return is_long_string($got, $expected, $desc);
}

# Replacement for Test::LongString::is_string: one test, but the failure
# diagnostic shows where the strings start to differ instead of dumping
# possibly huge bodies.
sub is_long_string {
    my ($got, $expected, $desc) = @_;
    local $Test::Builder::Level = $Test::Builder::Level + 1;
    my $ok = (defined $got && defined $expected) ? $got eq $expected
           : (!defined $got && !defined $expected);
    return Test::More::ok(1, $desc) if $ok;
    Test::More::ok(0, $desc);
    if (!defined $got || !defined $expected) {
        Test::More::diag("         got: " . (defined $got ? show_str($got) : 'undef')
            . "\n    expected: " . (defined $expected ? show_str($expected) : 'undef'));
        return 0;
    }
    my $i = 0;
    $i++ while $i < length($got) && $i < length($expected)
               && substr($got, $i, 1) eq substr($expected, $i, 1);
    my $from = $i > 20 ? $i - 20 : 0;
    Test::More::diag(sprintf "         got: \"%s\"\n      length: %d\n    expected: \"%s\"\n      length: %d\n    strings begin to differ at char %d",
        show_str(substr($got, $from, 60)), length $got,
        show_str(substr($expected, $from, 60)), length $expected, $i + 1);
    return 0;
}

sub show_str {
    my $s = shift;
    $s =~ s/([\\"])/\\$1/g;
    $s =~ s/\n/\\n/g; $s =~ s/\r/\\r/g; $s =~ s/\t/\\t/g;
    $s =~ s/([\0-\037\177-\377])/sprintf '\\x{%02x}', ord $1/ge;
    $s;
}

sub trim {
    my $s = shift;
    return undef unless defined $s;
    $s =~ s/^\s+|\s+$//g;
    $s =~ s/\s+/ /g;
    $s;
}

# "100ms" -> 0.1, "2s" / "2" -> 2 (same rules as the real parse_time).
sub parse_time {
    my $t = shift;
    return $t unless defined $t;
    if ($t =~ s/([^_a-zA-Z])ms$/$1/) { $t /= 1000 }
    else { $t =~ s/([^_a-zA-Z])s$/$1/ }
    $t;
}

# "Name: value" lines -> { Name => value }; "!Name" -> { Name => undef }.
sub parse_headers {
    my %h;
    for my $line (split /\n/, shift // '') {
        $line =~ s/^\s+|\s+$//g;
        next if $line eq '';
        if ($line =~ s/^!\s*//) { $h{$line} = undef; next }
        my ($k, $v) = split /\s*:\s*/, $line, 2;
        $h{$k} = $v;
    }
    \%h;
}

sub gen_rand_port {
    my $used = shift || {};
    for (1 .. 1000) {
        my $port = 1988 + int rand 63547;
        next if $used->{$port} || $port == $ServerPort;
        my $s = IO::Socket::INET->new(LocalAddr => $ServerAddr, LocalPort => $port,
                                      Proto => 'tcp', Listen => 1, Reuse => 1);
        if ($s) { close $s; return $port }
    }
    return undef;
}

# $TEST_NGINX_FOO -> $ENV{TEST_NGINX_FOO}; an unset variable bails out like
# the real one.  $TEST_NGINX_RAND_PORT_N gets a free port, stable per block.
our $RandPorts = {};
sub expand_env_in_text {
    my ($text, $name) = @_;
    return $text unless defined $text && !ref $text;
    $text =~ s{\$(TEST_NGINX_[_A-Z0-9]+)}{
        my $var = $1;
        if ($var =~ /^TEST_NGINX_RAND_PORT_\d+$/) {
            unless (defined $RandPorts->{$var}) {
                my %used = map { $_ => 1 } values %$RandPorts;
                $RandPorts->{$var} = gen_rand_port(\%used)
                    // bail_out("$name - Cannot find an available listening port number for $var.\n");
            }
            $RandPorts->{$var};
        } else {
            defined $ENV{$var} or bail_out("$name - No environment $var defined.\n");
            $ENV{$var};
        }
    }ge;
    $text;
}

# ---------------------------------------------------------------------------
# Test::Base compatible __DATA__ parsing.
# ---------------------------------------------------------------------------
our $BlockList;

sub _data_spec {
    no warnings 'once';
    my $fh = \*main::DATA;
    local $/;
    my $spec = eval { <$fh> };
    return defined $spec ? $spec : '';
}

# Parse all blocks once; ONLY/SKIP/LAST are applied here (as Test::Base's
# _choose_blocks does), so blocks() in scalar context is the real count.
sub block_list {
    return $BlockList if $BlockList;
    my @hunks = (_data_spec() =~ /^(===.*?(?=^===|\z))/msg);
    my @blocks;
    my $seq = 0;
    for my $hunk (@hunks) {
        my $b = Test::Nginx::Block->_parse($hunk, ++$seq);
        if (exists $b->{ONLY}) {
            Test::More::diag("I found ONLY: maybe you're debugging?");
            @blocks = ($b);
            last;
        }
        next if exists $b->{SKIP};
        push @blocks, $b;
        last if exists $b->{LAST};
    }
    $BlockList = \@blocks;
}

# ---------------------------------------------------------------------------
# Server root, config file, user files.
# ---------------------------------------------------------------------------
my $NginxV;
sub nginx_V {
    $NginxV //= `$NginxBinary -V 2>&1` // '';
}

sub nginx_version {
    return nginx_V() =~ m{nginx version: \S+/(\d+)\.(\d+)\.(\d+)} ? sprintf('%d.%03d%03d', $1, $2, $3) : undef;
}

sub setup_server_root {
    # Only remove what we create, so a mis-set TEST_NGINX_SERVROOT cannot
    # wipe unrelated data.
    if (-d $ServRoot) {
        remove_tree($ConfDir, $LogDir, $HtmlDir, "$ServRoot/cache",
                    glob("$ServRoot/*_temp"), glob("$ServRoot/*_cache"));
    }
    make_path($ServRoot, $LogDir, $HtmlDir, $ConfDir);
    -d $ConfDir or bail_out("Failed to create $ConfDir\n");
    open my $out, '>', "$HtmlDir/index.html" or bail_out("Can't write index.html: $!\n");
    print $out '<html><head><title>It works!</title></head><body>It works!</body></html>';
    close $out;
}

sub write_user_files {
    my $block = shift;
    my $name  = $block->name;
    my $files = $block->user_files;
    return unless $files;
    if (!ref $files) {
        my (@list, $cur);
        for my $line (split /^/, $files) {
            if ($line =~ /^>>> (\S+)(?:\s+(.+))?/) {
                push @list, $cur if $cur;
                $cur = [$1, undef, $2];
            } elsif ($cur) {
                $cur->[1] .= $line;
            }
        }
        push @list, $cur if $cur;
        $files = \@list;
    } elsif (ref $files ne 'ARRAY') {
        bail_out("$name - wrong value type for user_files: ", ref $files);
    }
    for my $f (@$files) {
        my ($fname, $body, $date) = @$f;
        my $path = $fname =~ m{^/} ? $fname : "$HtmlDir/$fname";
        make_path($1) if $path =~ m{(.*)/} && !-d $1;
        open my $out, '>', $path or bail_out("$name - Cannot open $path for writing: $!\n");
        binmode $out;
        print $out expand_env_in_text($body // '', $name);
        close $out;
        if ($date) {
            system("TZ=GMT touch -t '$date' '$path'") == 0
                or bail_out("$name - failed to set the date of $path\n");
        }
    }
}

sub write_config_file {
    my ($block, $config) = @_;
    my $name = $block->name;
    my $http_config = expand_env_in_text($block->http_config // '', $name);
    my $main_config = $block->main_config // '';
    if ($LoadModules) {
        $main_config = join ' ', (map { "load_module $_;" } grep { length } split /\s+/, $LoadModules),
                                 $main_config;
    }
    $main_config = expand_env_in_text($main_config, $name);
    my $post_main_config = expand_env_in_text($block->post_main_config // '', $name);
    my $server_name = $block->server_name // $ServerName;
    my $log_level = $block->log_level || $LogLevel;

    # Temp paths go under servroot (the Debian defaults under /var/lib/nginx
    # may not be writable); like the real one, skip a path the block sets
    # itself, or one whose module is compiled out.
    my $V = nginx_V();
    my $temps = '';
    for my $t (qw(client_body proxy fastcgi scgi uwsgi)) {
        next if $t =~ /^(?:fastcgi|scgi|uwsgi)$/ && $V =~ /--without-http_${t}_module/;
        next if $t =~ /^(?:proxy|client_body)$/ && $http_config =~ /\b${t}_temp_path\b/;
        $temps .= " ${t}_temp_path $ServRoot/${t}_temp;";
    }
    my $env = join '', map { my $v = /\s/ ? "'$_'" : $_; "env $v;\n" } @EnvToNginx;
    my $root_location = $NoRootLocation ? '' : <<"_EOC_";
        location / {
            root $HtmlDir;
            index index.html index.htm;
        }
_EOC_
    # "daemon off": we run nginx as our own child so we can waitpid() it
    # (the real one daemonizes, then polls for the zombie to go away).
    my $user = $> == 0 ? "user root;\n" : '';
    open my $out, '>', $ConfFile or bail_out("Can't open $ConfFile for writing: $!\n");
    print $out <<"_EOC_";
worker_processes  $Workers;
daemon off;
master_process $MasterProcessEnabled;
error_log $ErrLogFile $log_level;
pid       $PidFile;
$env
$main_config

http {
    access_log $AccLogFile;$temps

    default_type text/plain;
    keepalive_timeout  68000ms;

$http_config
    server {
        listen          $ServerPort;
        server_name     '$server_name';
        client_max_body_size 30M;

        # Begin preamble config...
$ConfigPreamble
        # End preamble config...

        # Begin test case config...
$config
        # End test case config.

$root_location    }
}

$post_main_config

events {
    accept_mutex off;
    worker_connections  $WorkerConnections;
}
$user
_EOC_
    close $out;
}

# ---------------------------------------------------------------------------
# nginx process management.  nginx runs in the foreground ("daemon off") as
# our forked child: startup failure = the child exits; success = the pid
# file holds the child's pid (nginx writes it after binding the listeners).
# ---------------------------------------------------------------------------
our $NginxPid;

sub nginx_command {
    my @cmd = ($NginxBinary, '-p', "$ServRoot/", '-c', $ConfFile);
    # -e (nginx >= 1.19.5) sends early startup errors to error.log too,
    # instead of the build's default (stderr on Debian).
    push @cmd, '-e', $ErrLogFile if (nginx_version() // 0) >= 1.019005;
    return @cmd unless $UseValgrind;
    if ($UseValgrind =~ /^\d+$/) {
        return ('valgrind', '--num-callers=100', '-q', '--tool=memcheck', '--leak-check=full',
                '--keep-debuginfo=yes', '--show-possibly-lost=no', '--gen-suppressions=all',
                (-f 'valgrind.suppress' ? '--suppressions=valgrind.suppress' : ()), @cmd);
    }
    return ('valgrind', '-q', split(/\s+/, $UseValgrind), @cmd);
}

# Returns (1) once nginx is up, or (0, $exit_status) if it exited.
sub start_nginx {
    my ($name, $stderr_file) = @_;
    my @cmd = nginx_command();
    warn "$name\n" if $UseValgrind;
    warn "starting nginx: @cmd\n" if $Verbose;
    unlink $PidFile;
    my $pid = fork // bail_out("$name - fork() failed: $!");
    if ($pid == 0) {
        open STDOUT, '>', '/dev/null';
        open STDERR, '>>', $stderr_file if defined $stderr_file;
        exec @cmd or POSIX::_exit(127);
    }
    my $deadline = time + ($UseValgrind ? 60 : 10);
    while (time < $deadline) {
        if (waitpid($pid, WNOHANG) == $pid) {
            return (0, $?);
        }
        if (open my $in, '<', $PidFile) {
            my $p = <$in> // '';
            if ($p =~ /^\s*(\d+)/ && $1 == $pid) {
                $NginxPid = $pid;
                sleep $TestNginxSleep;
                return (1);
            }
        }
        sleep 0.005;
    }
    $NginxPid = $pid;
    stop_nginx($name);
    return (0, -1);
}

sub stop_nginx {
    my $name = shift // '';
    my $pid = $NginxPid // return;
    undef $NginxPid;
    warn "stopping nginx $pid\n" if $Verbose;
    kill $ENV{TEST_NGINX_FAST_SHUTDOWN} ? SIGTERM : SIGQUIT, $pid;
    my $deadline = time + ($UseValgrind ? 30 : ($Timeout > 5 ? $Timeout : 5));
    while (time < $deadline) {
        return if waitpid($pid, WNOHANG) != 0;
        sleep 0.005;
    }
    warn "$name - timeout when waiting for nginx $pid to exit; killing it\n";
    kill SIGKILL, $pid;
    waitpid $pid, 0;
}

# ---------------------------------------------------------------------------
# Log readers: only the lines written since the last read in this block,
# unless check_accum_error_log() (same as the real one).
# ---------------------------------------------------------------------------
our $ErrLogFilePos = 0;

sub error_log_data {
    # Give nginx time for log-phase output written after the response.
    sleep $TestNginxSleep * 3;
    open my $in, '<', $ErrLogFile or return [];
    seek $in, $ErrLogFilePos, 0 if !$CheckAccumErrLog && $ErrLogFilePos > 0;
    my @lines = <$in>;
    $ErrLogFilePos = tell $in unless $CheckAccumErrLog;
    close $in;
    \@lines;
}

sub access_log_data {
    sleep $TestNginxSleep * 3;
    open my $in, '<', $AccLogFile or return [];
    my @lines = <$in>;
    \@lines;
}

# ---------------------------------------------------------------------------
# One-shot fake TCP server (tcp_listen/tcp_reply...): accept one
# connection, read the query, optionally wait, reply, close.
# ---------------------------------------------------------------------------
our $TcpServerPid;

sub start_tcp_server {
    my $block = shift;
    my $name = $block->name;
    my $target = expand_env_in_text($block->tcp_listen, $name);
    my $reply = $block->tcp_reply;
    bail_out("$name - no --- tcp_reply specified but --- tcp_listen is specified")
        if !defined $reply && !defined $block->tcp_shutdown;
    my $req_len = $block->tcp_query_len;
    my $query_file;
    if (defined $block->tcp_query || defined $req_len) {
        $req_len //= length $block->tcp_query;
        (undef, $query_file) = File::Temp::tempfile('tcp-query-XXXXXX', TMPDIR => 1, UNLINK => 1);
    }
    my ($sock, $err);
    for my $try (1 .. 20) {
        if ($target =~ /^\d+$/) {
            $sock = IO::Socket::INET->new(LocalHost => '127.0.0.1', LocalPort => $target,
                                          Proto => 'tcp', Reuse => 1, Listen => 5);
        } elsif ($target =~ /\S+\.sock$/) {
            unlink $target;
            $sock = IO::Socket::UNIX->new(Local => $target, Type => IO::Socket::UNIX::SOCK_STREAM(),
                                          Listen => 5);
        } else {
            bail_out("$name - bad tcp_listen target: $target");
        }
        last if $sock;
        $err = $!;
        last unless $err =~ /in use/i;
        sleep 0.25;
    }
    bail_out("$name - failed to create the tcp listening socket: $err") unless $sock;

    my $pid = fork // bail_out("$name - fork() failed: $!");
    if ($pid == 0) {
        # Child: never return into the test script (no END blocks, no TAP).
        my $client = $sock->accept or POSIX::_exit(1);
        my $shutdown = $block->tcp_shutdown;
        my ($no_read, $no_write);
        if (defined $shutdown) {
            sleep $block->tcp_shutdown_delay if $block->tcp_shutdown_delay;
            $client->shutdown($shutdown);
            ($shutdown == 0 || $shutdown == 2) ? ($no_read = 1) : ($no_write = 1);
        }
        my $buf = '';
        unless ($no_read) {
            # Without tcp_query_len a single read is enough, like the real one.
            while (1) {
                my $b;
                my $ret = sysread $client, $b, 4096;
                last unless $ret;
                $buf .= $b;
                if ($query_file && open my $out, '>', "$query_file.tmp") {
                    print $out $buf;
                    close $out;
                    rename "$query_file.tmp", $query_file;
                }
                last if !$req_len || length($buf) >= $req_len;
            }
        }
        my $delay = parse_time(scalar $block->tcp_reply_delay);
        sleep $delay if $delay;
        if (!$no_write && defined $reply) {
            $reply = $reply->($buf) if ref $reply eq 'CODE';
            for my $r (ref $reply eq 'ARRAY' ? @$reply : ($reply)) {
                syswrite $client, $r;
            }
        }
        if (defined $block->tcp_no_close) {
            sleep 1 while 1;
        }
        close $client;
        POSIX::_exit(0);
    }
    $TcpServerPid = $pid;
    warn "started fake TCP server $pid on $target\n" if $Verbose;
    return ($sock, $query_file);
}

sub stop_tcp_server {
    my $pid = $TcpServerPid // return;
    undef $TcpServerPid;
    kill SIGKILL, $pid;
    waitpid $pid, 0;
}

sub run_tcp_server_tests {
    my ($block, $query_file) = @_;
    my $name = $block->name;
    my $buf = '';
    if ($query_file && open my $in, '<', $query_file) {
        local $/;
        $buf = <$in> // '';
    }
    is_str($buf, $block->tcp_query, "$name - tcp_query ok") if defined $block->tcp_query;
    Test::More::is(length($buf), $block->tcp_query_len, "$name - TCP query length ok")
        if defined $block->tcp_query_len;
}

sub cleanup {
    return if $$ != $MainPid;
    $_->() for @CleanupHandlers;
    stop_tcp_server();
    stop_nginx('cleanup') unless $ENV{TEST_NGINX_NO_CLEAN};
}

END {
    if ($$ == $MainPid) {
        local $?;
        cleanup();
        remove_tree($ServRoot) if $Randomize && $ServRoot =~ m{/t/servroot_\d+$};
    }
}

# ===========================================================================
# Block objects: section values via methods, like Test::Base::Block.
# ===========================================================================
package Test::Nginx::Block;

our $AUTOLOAD;

sub _parse {
    my ($class, $hunk, $seq) = @_;
    my $self = bless { _seq => $seq, _filters => {}, _order => [] }, $class;
    $hunk =~ s/\A===[ \t]*(.*)\s+// or die "bad block: $hunk";
    my $name = $1;
    my @parts = split /^--- +\(?(\w+)\)? *(.*)?\n/m, $hunk;
    my $description = shift @parts;
    $description = $name unless defined $description && $description =~ /\S/;
    $description =~ s/\s*\z//;
    $self->{description} = [$description];
    while (@parts) {
        my ($sec, $filters, $value) = splice @parts, 0, 3;
        die "'$sec' is a reserved name. Use something else.\n" if $sec =~ /^_/;
        $value   //= '';
        $filters //= '';
        # One-line form: "--- name: value" / "--- name filters: value".
        if ($filters =~ /:(\s|\z)/) {
            die "Extra lines not allowed in '$sec' section\n" if $value =~ /\S/;
            ($filters, $value) = split /\s*:(?:\s+|\z)/, $filters, 2;
            $value //= '';
            $value =~ s/^\s*(.*?)\s*$/$1/;
        }
        $self->{_filters}{$sec} = $filters;
        push @{ $self->{_order} }, $sec;
        $self->{$sec} = [$value];
    }
    $self->{name} = [$name];
    $self;
}

sub set_value {
    my ($self, $sec, @v) = @_;
    $self->{$sec} = [@v];
}

sub seq_num { $_[0]{_seq} }

# Test::Base applies the default filters "norm trim" and then the
# section's own filters, in order; "-name" removes, "+name" appends last.
sub run_filters {
    my $self = shift;
    return if $self->{_filtered}++;
    for my $sec (@{ $self->{_order} }) {
        my (@f, @append);
        for my $spec ('norm', 'trim', split /\s+/, ($self->{_filters}{$sec} =~ s/^\s+//r)) {
            my $f = $spec;
            last unless length $f;
            if ($f =~ s/^-//) { @f = grep { $_ ne $f } @f }
            elsif ($f =~ s/^\+//) { push @append, $f }
            else { push @f, $f }
        }
        my @value = @{ $self->{$sec} };
        for my $f (@f, @append) {
            my $arg = $f =~ s/=(.*)$// ? $1 : undef;
            @value = $self->_apply_filter($sec, $f, $arg, @value);
            $self->{$sec} = [@value];
        }
    }
}

sub _apply_filter {
    my ($self, $sec, $f, $arg, @v) = @_;
    no strict 'refs';
    # A function of that name in main wins, as in Test::Base.
    if (defined &{"main::$f"}) {
        local $_ = (@v == 1 && !defined $v[0]) ? undef : join '', @v;
        my @r = &{"main::$f"}(@v);
        return ($_) if !@r || (@r == 1 && defined $r[0] && $r[0] =~ /\A(\d+|)\z/);
        return @r;
    }
    my $one = sub { die "Input to the '$f' filter must be a scalar, not a list\n" if @v != 1; $v[0] };
    if ($f eq 'norm')    { my $t = $one->() // ''; $t =~ s/\015\012/\n/g; $t =~ s/\r/\n/g; return $t }
    if ($f eq 'trim')    { return map { s/\A([ \t]*\n)+//; s/(?<=\n)\s*\z//g; $_ } @v }
    if ($f eq 'chomp')   { return map { chomp; $_ } @v }
    if ($f eq 'chop')    { return map { chop; $_ } @v }
    if ($f eq 'unchomp') { return map { "$_\n" } @v }
    if ($f eq 'eval') {
        my @r = Test::Base::Filter::_tn_eval($one->());
        return $@ if $@;
        return @r;
    }
    if ($f eq 'escape')  { my $t = $one->(); $t =~ s/(\\.)/eval "qq{$1}"/ge; return $t }
    if ($f eq 'join')    { return join $arg // '', @v }
    if ($f eq 'lines')   { my $t = $one->(); return length $t ? ($t =~ /^(.*\n?)/gm) : () }
    if ($f eq 'array')   { return [@v] }
    if ($f eq 'base64_decode') { require MIME::Base64; return MIME::Base64::decode_base64($one->()) }
    if ($f eq 'base64_encode') { require MIME::Base64; return MIME::Base64::encode_base64($one->()) }
    if ($f eq 'regexp') {
        my $t = $one->();
        my $flags = $arg;
        if ($t =~ /\n.*?\n/s) { $flags //= 'xism' } else { chomp $t }
        $flags //= '';
        my $re = eval "qr{$t}$flags";
        die $@ if $@;
        return $re;
    }
    die "Can't find a function or method for '$f' filter\n";
}

sub AUTOLOAD {
    my $self = shift;
    (my $sec = $AUTOLOAD) =~ s/.*:://;
    return if $sec eq 'DESTROY' || !exists $self->{$sec};
    my @v = @{ $self->{$sec} };
    return wantarray ? @v : $v[0];
}

# Test::Base evaluates "eval" sections inside package Test::Base::Filter
# under strict and warnings; do the same so that a section that works
# here also works with the real module (e.g. main's subs need "main::").
package Test::Base::Filter;
use strict;
use warnings;
sub _tn_eval { eval $_[0] }

1;
