package Test::Nginx::Socket;

# Minimal, core-Perl-only re-implementation of the subset of OpenResty's
# Test::Nginx::Socket that our suites use (see t/lib/README.md).  It keeps
# the real module's semantics: request building, response parsing, which
# checks run and how many tests each one contributes, so `plan tests => ...`
# arithmetic gives the same numbers under both.

use strict;
use warnings;

use Test::More ();
use IO::Socket::INET ();
use IO::Select ();
use POSIX qw(EAGAIN EINTR);
use List::Util qw(shuffle min);
use Time::HiRes qw(sleep time);
use Test::Nginx::Util;

our $VERSION = '0.33-pb';

# Same list as the real module (its own @EXPORT plus Test::Base's).
our @EXPORT = qw(
    env_to_nginx is_str plan run_tests run_test repeat_each config_preamble
    worker_connections master_process_enabled no_long_string workers
    master_on master_off log_level no_shuffle no_root_location use_hup
    server_name server_addr server_root html_dir server_port
    server_port_for_client timeout check_accum_error_log
    add_block_preprocessor bail_out add_test_cleanup_handler
    add_cleanup_handler add_response_body_check
    blocks is
    ok is isnt like unlike is_deeply cmp_ok skip todo_skip pass fail
    eq_array eq_hash eq_set can_ok isa_ok diag note explain use_ok $TODO
    no_diff
);

# Test::More functions re-exported as-is (the real one gets them through
# Test::Base).
for my $f (qw(ok isnt like unlike is_deeply cmp_ok skip todo_skip pass fail
              eq_array eq_hash eq_set can_ok isa_ok diag note explain use_ok plan)) {
    no strict 'refs';
    *{$f} = \&{"Test::More::$f"};
}
sub is { local $Test::Builder::Level = $Test::Builder::Level + 1; &Test::More::is(@_) }
sub no_diff { $ENV{TEST_SHOW_NO_DIFFS} = 1 }
# HUP reloading is not implemented: every block restarts nginx instead.
sub use_hup () { }

our @ResponseBodyChecks;
sub add_response_body_check ($) { push @ResponseBodyChecks, shift }
our $FilterHttpConfig;
sub set_http_config_filter ($) { $FilterHttpConfig = shift }

# Test::Base's blocks(): the count in scalar context, the filtered blocks
# in list context.
sub blocks {
    my $list = Test::Nginx::Util::block_list();
    return scalar @$list unless wantarray;
    $_->run_filters for @$list;
    return @$list;
}

# ---------------------------------------------------------------------------
# import: `use Test::Nginx::Socket;`, `... 'no_plan';`, `... tests => N;`
# and `use Test::Nginx::Socket -Base;` (a helper such as t/PB.pm becomes a
# subclass; `use t::PB;` then exports ours plus t::PB's own @EXPORT).
# ---------------------------------------------------------------------------
sub import {
    my $class = shift;
    my $caller = caller;
    my $base = grep { /^-base$/i } @_;
    my @args = grep { !/^-base$/i } @_;
    no strict 'refs';
    if ($base) {
        push @{"${caller}::ISA"}, $class unless $caller->isa($class);
        _spiffy_base_filter();
    } elsif (@args) {
        Test::More::plan(@args);
    }
    # Export @EXPORT of the class and all its ancestors, skipping names the
    # caller already defines (Spiffy's rule).
    my (@todo, %seen) = ($class);
    while (my $c = shift @todo) {
        next if $seen{$c}++;
        push @todo, @{"${c}::ISA"};
        for my $sym (@{"${c}::EXPORT"}) {
            if ($sym =~ /^\$(\w+)$/) {
                *{"${caller}::$1"} = $1 eq 'TODO' ? \$Test::More::TODO : \${"${c}::$1"};
                next;
            }
            next if defined &{"${caller}::$sym"};
            my $code = $c->can($sym) or next;
            *{"${caller}::$sym"} = $code;
        }
    }
    # Test::Base turns on strict and warnings for the rest of the script.
    strict->import;
    warnings->import;
}

# With -Base, Spiffy rewrites the importing file: each `sub name {` gets a
# leading `my $self = shift;`, and `sub name() {` loses its `()` without
# getting $self.  Reproduce that so a helper module behaves the same here.
sub _spiffy_base_filter {
    require Filter::Util::Call;
    my $done;
    Filter::Util::Call::filter_add(sub {
        return 0 if $done;
        my ($src, $tail) = ('', '');
        while ((my $st = Filter::Util::Call::filter_read()) != 0) {
            return $st if $st < 0;
            if (/^__(?:END|DATA)__\r?$/) { $tail = $_; last }
            $src .= $_;
            $_ = '';
        }
        $src =~ s/^(sub\s+\w+\s+\{)/$1my \$self = shift;/gm;
        $src =~ s/^(sub\s+\w+)\s*\(\s*\)(\s+\{)/$1$2/gm;
        $_ = "use strict;use warnings;$src;1;\n$tail";
        $done = 1;
        return 1;
    });
}

# ---------------------------------------------------------------------------
# Request building.
# ---------------------------------------------------------------------------

# "Name: value" lines -> CRLF header block; detects a chunked request body.
sub parse_more_headers {
    my $in = shift;
    my ($out, $chunked) = ('', 0);
    for my $h (split /\n+/, $in) {
        next if $h =~ /^\s*#/;
        my ($k, $v) = split /:\s*/, $h, 2;
        $v //= '';
        $chunked = 1 if lc $k eq 'transfer-encoding' && $v eq 'chunked';
        $out .= "$k: $v\r\n";
    }
    ($out, $chunked);
}

# Turn "METH [/uri [HTTP/x]]\nbody" (possibly split over several packets)
# into a full HTTP request, keeping the caller's packet boundaries.  The
# request is described as a list of (original length => replacement)
# edits that are then applied across the packets.
sub build_request {
    my ($name, $more_headers, $chunked, $conn, $packets) = @_;
    my $req = join '', @$packets;
    my ($first, $content) = $req =~ /\A([^\n]*\n?)(.*)\z/s;
    $first =~ /^(\s*)(\S+)( *)(?:(\S+)( *))?(?:(\S+)( *))?(\s*)$/
        or bail_out("$name - Request line is not valid. Should be 'meth [url [version]]' but got \"$first\".");
    my @edit = (
        [length $1, ''], [length $2, "$2 "], [length $3, ''],
        [defined $4 ? length $4 : 0, ($4 // '/') . ' '], [length($5 // ''), ''],
        [defined $6 ? length $6 : 0, ($6 // 'HTTP/1.1') . "\r\n"],
        [length($7 // '') + length $8, ''],
    );
    my $len_header = '';
    my $body = $content;
    if (!$chunked && $content ne '' && $more_headers !~ /(?:^|\n)Content-Length:/) {
        # The real module trims the body (so the section's final newline is
        # not sent) whenever it computes Content-Length itself.
        $body =~ s/^\s+|\s+$//gs;
        $len_header = "Content-Length: " . length($body) . "\r\n";
    }
    my $headers = '';
    $headers .= "Host: $ServerName\r\n" if $more_headers !~ /(?:^|\n)Host:/msi;
    $headers .= "Connection: $conn\r\n" if $more_headers !~ /(?:^|\n)Connection/msi;
    $headers .= "$more_headers$len_header\r\n";
    push @edit, [0, $headers], [length $content, $body];

    # Apply the edits packet by packet: a replacement spanning several
    # packets is cut at the same places as the original text.
    my @out = map { '' } @$packets;
    my ($p, $off) = (0, 0);
    for my $e (@edit) {
        my ($n, $rep) = @$e;
        if ($n == 0) { $out[$p] .= $rep; next }
        while ($n > 0) {
            while ($off >= length $packets->[$p]) { $p++; $off = 0 }
            my $k = min($n, length($packets->[$p]) - $off);
            $n -= $k;
            $off += $k;
            $out[$p] .= $n > 0 ? substr($rep, 0, $k, '') : $rep;
        }
    }
    \@out;
}

# Returns a list of requests; each request is a list of packets
# { value => bytes, delay_before => secs }.
sub get_req_from_block {
    my $block = shift;
    my $name = $block->name;
    if (defined(my $raw = $block->raw_request)) {
        return [[ map { { value => $_ } } ref $raw eq 'ARRAY' ? @$raw : ($raw) ]];
    }
    my $more = $block->more_headers // '';
    my $hdr_for = sub {
        my $i = shift;
        my $h = $more;
        if (ref $more eq 'ARRAY') {
            $h = $more->[$i] // bail_out("$name - --- more_headers lacks data for request $i");
        }
        parse_more_headers($h);
    };
    if (my $reqs = $block->pipelined_requests) {
        bail_out("$name - invalid entries in --- pipelined_requests") if ref $reqs ne 'ARRAY';
        my $all = '';
        for my $i (0 .. $#$reqs) {
            my $r = expand_env_in_text($reqs->[$i], $name);
            $all .= build_request($name, $hdr_for->($i), $i == $#$reqs ? 'close' : 'keep-alive', [$r])->[0];
        }
        return [[{ value => $all }]];
    }
    my $request = $block->request;
    bail_out("$name - Request line should be non-empty") unless defined $request;
    if (!ref $request) {
        1 while $request =~ s/^\s*\#[^\n]+\s+|^\s+//gs;   # leading comments
        return [[{ value => build_request($name, $hdr_for->(0), 'close', [$request])->[0] }]];
    }
    bail_out("$name - invalid ---request : MUST be string or array of requests") if ref $request ne 'ARRAY';
    my @list;
    for my $i (0 .. $#$request) {
        my $one = $request->[$i];
        if (!ref $one) {
            push @list, [{ value => build_request($name, $hdr_for->($i), 'close', [$one])->[0] }];
        } elsif (ref $one eq 'ARRAY') {
            my @pk = map { ref $_ eq 'HASH' ? { %$_ } : { value => $_ } } @$one;
            my $out = build_request($name, $hdr_for->($i), 'close', [map { $_->{value} } @pk]);
            $pk[$_]{value} = $out->[$_] for 0 .. $#pk;
            push @list, \@pk;
        } else {
            bail_out("$name - Invalid syntax. $one should be a string or an array of packets.");
        }
    }
    \@list;
}

# ---------------------------------------------------------------------------
# HTTP client: write the packets, read until the server closes (we send
# "Connection: close", as the real module does) or the timeout expires.
# ---------------------------------------------------------------------------
sub send_request {
    my ($packets, $middle_delay, $timeout, $block) = @_;
    my $name = $block->name;
    my $sock;
    for my $try (1 .. 30) {
        $sock = IO::Socket::INET->new(PeerAddr => $ServerAddr, PeerPort => $ServerPortForClient,
                                      Proto => 'tcp', Timeout => $timeout);
        last if $sock;
        sleep 0.05 * $try > 1 ? 1 : 0.05 * $try;
    }
    if (!$sock) {
        Test::More->builder->no_ending(1);
        Test::More::fail("$name - Can't connect to $ServerAddr:$ServerPortForClient: $! (aborted)\n");
        return '';
    }
    $sock->blocking(0);
    local $SIG{PIPE} = 'IGNORE';
    my @queue = map { {%$_} } @$packets;
    my $cur = shift @queue;
    my ($resp, $writing) = ('', 1);
    my $sel = IO::Select->new($sock);
    while (1) {
        $! = 0;
        my ($r, $w) = IO::Select->select($sel, $writing ? $sel : undef, undef, $timeout);
        if (!$r && !$w) {
            next if $! == EINTR;
            close $sock;
            if (defined $block->abort) { sleep 0.005 }
            else {
                Test::More->builder->no_ending(1);
                Test::More::fail("ERROR: client socket timed out - $name\n");
            }
            return $resp;
        }
        if ($w && @$w) {
            my $n = syswrite $sock, $cur->{value};
            if (!defined $n && $! != EAGAIN) {
                warn "write failed: $!\n";
                $writing = 0;
            } elsif (defined $n) {
                substr($cur->{value}, 0, $n, '');
                while ($writing && $cur->{value} eq '') {
                    if (!@queue) {
                        $writing = 0;
                        if (defined(my $sd = $block->shutdown)) {
                            shutdown $sock, $sd =~ /^\s*$/ ? 1 : $sd;
                        }
                        last;
                    }
                    $cur = shift @queue;
                    my $d = $cur->{delay_before} // $middle_delay;
                    sleep $d if $d;
                }
            }
        }
        if ($r && @$r) {
            my $n = sysread $sock, my $buf, 4096;
            if (!defined $n) {
                next if $! == EAGAIN;
                warn "WARNING: $name - HTTP response read failure: $!\n";
                last;
            }
            last if $n == 0;
            $resp .= $buf;
        }
    }
    close $sock;
    $resp;
}

# ---------------------------------------------------------------------------
# Response parsing (what HTTP::Response->parse + the real parse_response
# do): returns ($res, $raw_headers, $leftover_bytes).
# ---------------------------------------------------------------------------
sub Test::Nginx::Response::code    { $_[0]{code} }
sub Test::Nginx::Response::content { $_[0]{content} }
sub Test::Nginx::Response::header {
    my ($self, $k) = @_;
    my @v = map { $_->[1] } grep { lc $_->[0] eq lc $k } @{ $self->{headers} };
    return wantarray ? @v : @v ? join(', ', @v) : undef;
}

sub parse_response {
    my ($name, $raw, $head_req) = @_;
    my $raw_headers = $raw =~ /(.*?\r\n)\r\n/s ? $1 : '';
    my $res = bless { headers => [] }, 'Test::Nginx::Response';
    my $str = $raw;
    my $status = $str =~ s/^(.*)\n// ? $1 : do { my $s = $str; $str = ''; $s };
    $status =~ s/\r\z//;
    my $code = $status =~ /^\d{3} / ? (split ' ', $status, 2)[0] : (split ' ', $status, 3)[1];
    $res->{code} = defined $code && $code =~ /^\d+$/ ? $code : undef;
    while (1) {
        if ($str =~ s/^([^\s:]+)[ \t]*: ?(.*)\n?//) {
            my ($k, $v) = ($1, $2);
            $v =~ s/\r\z//;
            push @{ $res->{headers} }, [$k, $v];
        } elsif (@{ $res->{headers} } && $str =~ s/^([ \t].*)\n?//) {
            (my $more = $1) =~ s/\r\z//;
            $res->{headers}[-1][1] .= "\n$more";
        } else {
            $str =~ s/^\r?\n//;
            last;
        }
    }
    $res->{content} = $str;
    $code = $res->{code};
    return ($res, $raw_headers) if $code && ($code == 304 || $code == 101);

    my $left;
    my $te  = $res->header('Transfer-Encoding');
    my $len = $res->header('Content-Length');
    my $bad = sub {
        Test::More->builder->no_ending(1);
        Test::More::fail("$name - $_[0]");
        return;
    };
    if (defined $te && $te eq 'chunked') {
        my @trailers = $res->header('Trailer');
        my $decoded = '';
        pos($str) = 0;
        while (1) {
            if (!@trailers && $str =~ /\G0[ \t]*\r\n\r\n/gc) {
                $left = $1 if $str =~ /\G(.+)/gcs;
                last;
            }
            if (@trailers && $str =~ /\G0[ \t]*\r\n/gc) {
                for my $t (@trailers) {
                    return $bad->("invalid trailer data received (expected $t).")
                        unless $str =~ /\G\Q$t\E: [^\n]*\r\n/gc;
                }
                return $bad->("invalid chunked data received (expected CRLF).") unless $str =~ /\G\r\n/gc;
                $left = $1 if $str =~ /\G(.+)/gcs;
                last;
            }
            if ($str =~ /\G[ \t]*([A-Fa-f0-9]+)[ \t]*\r\n/gc) {
                my $size = hex $1;
                my $p = pos $str;
                return $bad->("invalid chunked data received (not enought octets for the data section)")
                    if length($str) - $p < $size;
                $decoded .= substr $str, $p, $size;
                pos($str) = $p + $size;
                return $bad->("invalid chunked data received (expected CRLF).") unless $str =~ /\G\r\n/gc;
            } elsif ($str =~ /\G(.+)/gcs) {
                return $bad->("invalid chunked body received: $1");
            } else {
                return $bad->("no last chunk found - $str");
            }
        }
        $res->{content} = $decoded;
    } elsif (defined $len && $len =~ /^\d+$/) {
        if (length $str < $len) {
            warn "WARNING: $name - response body truncated: $len expected, but got ",
                 length $str, "\n" unless $head_req;
        } elsif (length $str > $len) {
            $left = substr $str, $len;
            $res->{content} = substr $str, 0, $len;
        }
    }
    ($res, $raw_headers, $left);
}

# ---------------------------------------------------------------------------
# Checks.  Each mirrors the real one's test count.
# ---------------------------------------------------------------------------
sub get_indexed_value {
    my ($name, $value, $idx, $need_array) = @_;
    if ($need_array) {
        return $value->[$idx] if ref $value eq 'ARRAY';
        bail_out("$name - You asked for many requests, the expected results should be arrays as well.");
    }
    return ref $value eq 'ARRAY' ? $value->[0] : $value;
}

sub check_error_code {
    my ($block, $res, $idx, $need_array) = @_;
    my $name = $block->name;
    my $got = ($res && $res->code) || '';
    if (defined $block->error_code_like) {
        my $v = get_indexed_value($name, $block->error_code_like, $idx, $need_array);
        Test::More::like($got, qr/$v/sm, "$name - status code ok");
    } else {
        my $want = defined $block->error_code
            ? get_indexed_value($name, $block->error_code, $idx, $need_array) : 200;
        Test::More::is($got, $want, "$name - status code ok");
    }
}

sub check_response_headers {
    my ($block, $res, $raw_headers, $idx, $need_array) = @_;
    my $name = $block->name;
    for my $kind (qw(like unlike)) {
        my $meth = "raw_response_headers_$kind";
        my $v = $block->$meth;
        next unless defined $v;
        $v = get_indexed_value($name, $v, $idx, $need_array);
        no strict 'refs';
        &{"Test::More::$kind"}($raw_headers, qr/$v/s, "$name - raw resp headers $kind");
    }
    if (defined $block->response_headers) {
        my $h = parse_headers(get_indexed_value($name, $block->response_headers, $idx, $need_array));
        while (my ($k, $v) = each %$h) {
            if (!defined $v) {
                Test::More::unlike($raw_headers, qr/^\s*\Q$k\E\s*:/ms,
                                   "$name - header $k not present in the raw headers");
                next;
            }
            $v =~ s/\$ServerPort\b/$ServerPort/g;
            $v =~ s/\$ServerPortForClient\b/$ServerPortForClient/g;
            my $got = $res ? $res->header($k) : undef;
            Test::More::is($got // '', $v, "$name - header $k ok");
        }
    } elsif (defined $block->response_headers_like) {
        # Ignored when response_headers is present (if/elsif in the real one).
        my $h = parse_headers(get_indexed_value($name, $block->response_headers_like, $idx, $need_array));
        while (my ($k, $v) = each %$h) {
            my $got = $res ? $res->header($k) : undef;
            Test::More::like($got // '', qr/^$v$/, "$name - header $k like ok");
        }
    }
}

sub check_response_body {
    my ($block, $res, $idx, $rep_idx, $need_array) = @_;
    my $name = $block->name;
    my $content = $res ? $res->content : undef;
    if (defined $content) {
        $content =~ s/^TE: deflate,gzip;q=0\.3\r\n//gms;
        $content =~ s/^Connection: TE, close\r\n//gms;
    }
    if (defined $block->response_body) {
        my $want = get_indexed_value($name, $block->response_body, $idx, $need_array);
        if (defined $want && !ref $want) {
            $want =~ s/\$ServerPort\b/$ServerPort/g;
            $want =~ s/\$ServerPortForClient\b/$ServerPortForClient/g;
            $want = expand_env_in_text($want, $name);
        }
        my $desc = "$name - response_body - response is expected (repeated req $rep_idx, req $idx)";
        if (ref $want) {
            Test::More::like($content, $want, "$name - response_body - like (repeated req $rep_idx, req $idx)");
        } elsif ($NoLongString) {
            Test::More::is($content, $want, $desc);
        } else {
            Test::Nginx::Util::is_long_string($content, $want, $desc);
        }
    } elsif (defined $block->response_body_like || defined $block->response_body_unlike) {
        # Only one of the two is checked, response_body_like first (as in the real one).
        my $type = defined $block->response_body_like ? 'like' : 'unlike';
        my $pat = get_indexed_value($name, $type eq 'like' ? $block->response_body_like
                                                           : $block->response_body_unlike, $idx, $need_array);
        $pat =~ s/\$ServerPort\b/$ServerPort/g;
        $pat =~ s/\$ServerPortForClient\b/$ServerPortForClient/g;
        my $summary = trim($content) // '';
        no strict 'refs';
        &{"Test::More::$type"}($content, qr/$pat/s,
            "$name - response_body_$type - response is expected ($summary)");
    }
    $_->($block, $res ? $res->content : undef, $idx, $rep_idx, 0) for @ResponseBodyChecks;
}

sub fmt_str {
    my $s = shift;
    chomp $s;
    $s =~ s/"/\\"/g; $s =~ s/\r/\\r/g; $s =~ s/\n/\\n/g;
    $s;
}

# Patterns from a string section (one per line), a qr// or an arrayref.
sub _patterns {
    my $p = shift;
    return [grep { defined } @$p] if ref $p eq 'ARRAY';
    return [$p] if ref $p;
    chomp $p;
    [split /\n+/, $p];
}

sub _line_matches { my ($line, $pat) = @_; ref $pat ? $line =~ /$pat/ : index($line, $pat) >= 0 }

# error_log: one pass per pattern found (fail for each missing one);
# no_error_log: one pass per pattern absent, one fail per matching line.
sub check_log {
    my ($block, $what, $lines, $rep_idx) = @_;
    my $name = $block->name;
    my $file = $what =~ /access/ ? 'access.log' : 'error.log';
    if (defined(my $p = $block->$what)) {
        my @pats = @{ _patterns($p) };
        for my $line (@$lines) {
            for my $pat (@pats) {
                next unless defined $pat && _line_matches($line, $pat);
                Test::More::pass("$name - pattern \"$pat\" matches a line in $file (req $rep_idx)");
                undef $pat;
            }
        }
        Test::More::fail("$name - pattern \"$_\" should match a line in $file (req $rep_idx)")
            for grep { defined } @pats;
    }
    if (defined(my $p = $block->${\"no_$what"})) {
        my @pats = @{ _patterns($p) };
        my %found;
        for my $i (0 .. $#$lines) {
            for my $pat (@pats) {
                next unless _line_matches($lines->[$i], $pat);
                Test::More->builder->no_ending(1) if $found{$pat}++;
                my @more = @$lines[$i + 1 .. min($i + 9, $#$lines)];
                Test::More::fail("$name - pattern \"" . fmt_str($pat) . "\" should not match any line in $file but matches line \""
                                 . fmt_str($lines->[$i]) . "\" (req $rep_idx)\n" . join '', @more);
            }
        }
        Test::More::pass("$name - pattern \"" . fmt_str($_) . "\" does not match a line in $file (req $rep_idx)")
            for grep { !$found{$_} } @pats;
    }
}

sub check_error_log {
    my ($block, $rep_idx) = @_;
    my $name = $block->name;
    my $lines;
    my $grep = $block->grep_error_log;
    if (defined $grep) {
        $grep = $grep->[$rep_idx] if ref $grep eq 'ARRAY';
        my $want = $block->grep_error_log_out;
        bail_out("$name - No --- grep_error_log_out defined but --- grep_error_log is defined") unless defined $want;
        $want = $want->[$rep_idx] if ref $want eq 'ARRAY';
        $want = expand_env_in_text($want, $name);
        $lines ||= error_log_data();
        my $got = '';
        for my $line (@$lines) {
            if ((ref $grep && $line =~ /$grep/) || $line =~ /\Q$grep\E/) {
                $got .= "$&\n" if $& !~ /\n/;
            }
        }
        my $desc = "$name - grep_error_log_out (req $rep_idx)";
        ref $want eq 'Regexp' ? Test::More::like($got, $want, $desc) : is_str($got, $want, $desc);
    } elsif (defined $block->grep_error_log_out) {
        bail_out("$name - No --- grep_error_log defined but --- grep_error_log_out is defined");
    }
    $lines ||= error_log_data();
    check_log($block, 'error_log', $lines, $rep_idx);

    # Like the real one: surface unexpected serious log lines as warnings,
    # and fail on assertion failures.
    my $expected = join "\n", map { ref $_ ? "$_" : $_ } grep { defined }
        map { ref $_ eq 'ARRAY' ? @$_ : $_ } $block->error_log, $block->no_error_log;
    for my $level (qw(alert crit emerg)) {
        next if index($expected, "[$level") >= 0;
        warn "WARNING: $name - " . fmt_str($_) . "\n" for grep { /\[$level\]/ } @$lines;
    }
    for my $line (grep { /\bAssertion .*?failed\b/ } @$lines) {
        Test::More->builder->no_ending(1);
        Test::More::fail("$name - $line");
    }
}

sub check_access_log {
    my ($block, $rep_idx) = @_;
    return unless defined $block->access_log || defined $block->no_access_log;
    check_log($block, 'access_log', access_log_data(), $rep_idx);
}

# ---------------------------------------------------------------------------
# Per-block driver.
# ---------------------------------------------------------------------------
sub run_test_helper {
    my ($block, $rep_idx) = @_;
    my $name = $block->name;
    my $reqs = get_req_from_block($block);
    my $timeout = parse_time(scalar $block->timeout) // $Test::Nginx::Util::Timeout;
    my $pipelined = $block->pipelined_requests;
    my $need_array = $pipelined ? 1 : @$reqs > 1;
    my $req_idx = 0;
    for my $r (0 .. $#$reqs) {
        my $head = (join '', map { $_->{value} } @{ $reqs->[$r] }) =~ /^\s*HEAD\s+/;
        my $raw = send_request($reqs->[$r], scalar $block->raw_request_middle_delay, $timeout, $block);
        warn "!!! resp: [$raw]\n" if $Test::Nginx::Util::Verbose;
        my $n = $pipelined ? @$pipelined : 0;     # responses left in $raw
        while (1) {
            my ($res, $raw_headers, $left);
            ($res, $raw_headers, $left) = parse_response($name, $raw, $head)
                unless defined $block->ignore_response;
            if ($n) {
                $raw = $left // '';
                $n--;
            } elsif (defined $left && length $left) {
                warn "WARNING: $name - unexpected extra bytes after last chunk in response: \""
                     . Test::Nginx::Util::show_str($left) . "\"\n";
            }
            unless (defined $block->ignore_response) {
                check_error_code($block, $res, $req_idx, $need_array);
                check_response_headers($block, $res, $raw_headers // '', $req_idx, $need_array);
                check_response_body($block, $res, $req_idx, $rep_idx, $need_array);
            }
            # Intermediate requests get their own log checks (real behaviour).
            if ($n || $r < $#$reqs) {
                sleep $block->wait if $block->wait;
                check_error_log($block, $rep_idx);
                check_access_log($block, $rep_idx) unless defined $block->ignore_response;
            }
            $req_idx++;
            last unless $n;
        }
    }
    sleep $block->wait if $block->wait;
    check_error_log($block, $rep_idx);
    check_access_log($block, $rep_idx) unless defined $block->ignore_response;
}

our $PrevConfig;

sub run_test {
    my $block = shift;
    my $name = $block->name;
    local $Test::Nginx::Util::RandPorts = {};
    my $config = expand_env_in_text(scalar $block->config, $name);

    if (!defined $config) {
        # Like the real one: a block without --- config reuses the running
        # nginx (started for a previous block) as is.
        bail_out("$name - No '--- config' section specified and could not get previous one.")
            unless defined $PrevConfig;
    } else {
        $PrevConfig = $config;
        Test::Nginx::Util::stop_nginx($name);
        Test::Nginx::Util::setup_server_root();
        if (defined(my $code = $block->post_setup_server_root)) {
            eval $code;
            bail_out("$name - post_setup_server_root failed: $@") if $@;
        }
        Test::Nginx::Util::write_user_files($block);
        if ($FilterHttpConfig && defined $block->http_config) {
            $block->set_value(http_config => $FilterHttpConfig->($block->http_config));
        }
        Test::Nginx::Util::write_config_file($block, $config);
        return if defined $block->must_die && run_must_die($block);
        my ($ok, $status);
        for my $try (1 .. 10) {
            ($ok, $status) = Test::Nginx::Util::start_nginx($name);
            last if $ok || !_emerg_line() || _emerg_line() !~ /in use/;
            sleep 0.5;      # port still held by someone else: retry a bit
        }
        if (!$ok) {
            # The real one retries for 30 s and then BAIL_OUTs; we fail this
            # block only, so the rest of the suite still runs.
            Test::More::fail("$name - nginx failed to start (status $status): "
                             . (_emerg_line() // 'no [emerg] line in error.log'));
            Test::More::diag("config: $Test::Nginx::Util::ConfFile");
            return;
        }
    }

    if (defined(my $init = $block->init)) {
        eval $init;
        bail_out("$name - init failed: $@") if $@;
    }
    $Test::Nginx::Util::ErrLogFilePos = 0;
    for my $i (1 .. $RepeatEach) {
        my $query_file;
        (undef, $query_file) = Test::Nginx::Util::start_tcp_server($block) if defined $block->tcp_listen;
        Test::Nginx::Util::write_user_files($block) if $i > 1;
        run_test_helper($block, $i - 1);
        Test::Nginx::Util::run_tcp_server_tests($block, $query_file) if defined $block->tcp_listen;
        Test::Nginx::Util::stop_tcp_server();
    }
}

sub _emerg_line {
    open my $in, '<', $Test::Nginx::Util::ErrLogFile or return undef;
    while (<$in>) { chomp; return $_ if /\[emerg\]/ }
    undef;
}

# --- must_die: nginx must refuse to start; per repetition one test for the
# exit status plus the error_log checks (against error.log, where `-e` also
# sends the startup errors).  Returns 1 (block done).
sub run_must_die {
    my $block = shift;
    my $name = $block->name;
    my $must_die = $block->must_die;
    my $stderr = "$Test::Nginx::Util::LogDir/nginx-stderr.log";
    local $Test::Nginx::Util::UseValgrind;     # the real one skips valgrind here too
    $Test::Nginx::Util::ErrLogFilePos = 0;
    for my $i (0 .. $RepeatEach - 1) {
        my ($ok, $status) = Test::Nginx::Util::start_nginx($name, $stderr);
        $status = 0 if $ok || $status == -1;    # still running = did not die
        if ($status & 128) {
            Test::More::fail("$name - nginx core dumped");
        } elsif ($must_die =~ /^\s*\d+\s*$/) {
            Test::More::is($must_die, $status >> 8, "$name - die with the expected exit code");
        } else {
            Test::More::isnt($status, 0, "$name - die as expected");
        }
        check_error_log($block, $i);
        if ($ok) {
            warn "WARNING: $name - nginx must die but it does not; killing it (req $i)\n";
            Test::Nginx::Util::stop_nginx($name);
        }
    }
    if ($Test::Nginx::Util::Verbose && -s $stderr) {
        open my $in, '<', $stderr;
        warn "nginx stderr: $_" while <$in>;
    }
    1;
}

sub run_tests () {
    srand($$ ^ int(time * 1000));
    $ENV{TEST_NGINX_SERVER_PORT} //= $ServerPort;
    my @blocks = blocks();
    @blocks = shuffle @blocks unless $Test::Nginx::Util::NoShuffle;
    for my $block (@blocks) {
        $_->($block) for @Test::Nginx::Util::BlockPreprocessors;
        $block->set_value(name => "$0 " . $block->name);
        run_test($block);
        $_->($block) for @Test::Nginx::Util::TestCleanupHandlers;
    }
    Test::Nginx::Util::cleanup();
}

1;
