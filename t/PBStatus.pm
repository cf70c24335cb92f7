package t::PBStatus;

# Helpers of the operator-side suites (t/009-status.t, t/010-metrics.t,
# t/011-admin.t): a Redis database of their own (db 5 of the test Redis,
# flushed by seed()), a queue in a known state written the way pb-worker
# writes it (docs/redis-layout.md), and the exact shape of the status JSON.
#
#   use Test::Nginx::Socket 'no_plan';
#   use t::PB;
#   use t::PBStatus;

use strict;
use warnings;

use B ();
use JSON::PP ();
use Test::More ();
use Time::HiRes ();

our $Db = 5;

$ENV{TEST_NGINX_STATUS_DB} = $Db;


sub redis { t::PB::redis('-n', $Db, @_) }


# Blocks without a config (or a request) get these.
sub defaults {
    my (%d) = @_;

    Test::Nginx::Socket::add_block_preprocessor(sub {
        my ($block) = @_;

        for my $section (sort keys %d) {
            $block->set_value($section, $d{$section})
                unless defined $block->$section;
        }
    });
}


sub now_ms { int(Time::HiRes::time() * 1000) }


sub flush { redis('FLUSHDB') }


# One run going for 4 s (agent A averages 10 s), three jobs waiting (the
# last of agent B, never run: it takes the all-agents average of 8 s), a
# dead letter, a failed run, a live worker, some worker counters.
sub seed {
    my $now = now_ms();
    my $J = 'phantombuster:job:';

    flush();

    redis('HSET', 'phantombuster:run_stats', 'avg_ms:A', 10000, 'runs:A', 3,
          'last_ms:A', 9000, 'avg_ms:*', 8000, 'runs:*', 5,
          'last_ms:*', 5000);

    redis('HSET', "${J}r1", 'id', 'r1', 'agent', 'A', 'state', 'running',
          'container', 'c1', 'claimed_at', $now - 4000,
          'launched_at', $now - 3500, 'worker', 'w1', 'attempts', 0);
    redis('ZADD', 'phantombuster:jobs:running', $now + 1800000, 'r1');

    my @pending = (['p1', 'A'], ['p2', 'A'], ['p3', 'B']);

    for my $i (0 .. $#pending) {
        my ($id, $agent) = @{ $pending[$i] };

        redis('HSET', "$J$id", 'id', $id, 'agent', $agent, 'priority', 0,
              'enqueued_at', $now - 1000 * (3 - $i), 'attempts', 0,
              'state', 'pending');
        redis('ZADD', 'phantombuster:jobs:pending', $i + 1, $id);
    }

    redis('HSET', "${J}d1", 'id', 'd1', 'agent', 'A', 'state', 'dead',
          'error', 'HTTP 400: bad "argument"', 'attempts', 1);
    redis('ZADD', 'phantombuster:jobs:dead', $now - 2000, 'd1');

    redis('HSET', "${J}f1", 'id', 'f1', 'agent', 'A', 'state', 'done',
          'status', 'failed', 'exit_code', 1, 'exit_message',
          'agent crashed', 'claimed_at', $now - 20000, 'found_by', 'webhook',
          'container', 'c0');
    redis('ZADD', 'phantombuster:jobs:done', $now - 5000, 'f1');

    redis('HSET', 'phantombuster:metrics', 'launches', 5, 'launch_429', 2,
          'launch_refusals', 1, 'completed_failed', 1,
          'exit:agent crashed', 1, 'polls', 0, 'webhooks', 5,
          'last_webhook_at', $now - 5000);

    redis('SET', 'phantombuster:worker:w1',
          '{"pid":1,"at":' . $now . ',"poll":false,"max_running":1}');
    redis('SADD', 'phantombuster:workers', 'w1');

    return $now;
}


# ---- the status JSON's shape ---------------------------------------------

my %running = (
    id => 'string', agent => 'string|null', state => 'string|null',
    container => 'string|null', claimed_at => 'integer|null',
    launched_at => 'integer|null', elapsed_ms => 'integer|null',
    worker => 'string|null', attempts => 'integer', in_doubt => 'boolean',
    deadline => 'integer', overdue_ms => 'integer', stuck => 'boolean',
    avg_run_ms => 'integer|null', remaining_ms => 'integer|null',
);

my %pending = (
    position => 'integer', id => 'string', agent => 'string|null',
    priority => 'integer', enqueued_at => 'integer|null',
    waiting_ms => 'integer|null', attempts => 'integer',
    dlq_retries => 'integer', avg_run_ms => 'integer|null',
    starts_in_ms => 'integer|null', done_in_ms => 'integer|null',
);

my %dead = (
    id => 'string', agent => 'string|null', error => 'string|null',
    attempts => 'integer', dlq_retries => 'integer',
    container => 'string|null', dead_at => 'integer',
);

my %recent = (
    id => 'string', agent => 'string|null', outcome => 'string|null',
    found_by => 'string|null', exit_code => 'integer|null',
    exit_message => 'string|null', error => 'string|null',
    container => 'string|null', finished_at => 'integer',
    duration_ms => 'integer|null',
);

our %Status = (
    now => 'integer',
    lane => { state => 'string', closed_ms => 'integer',
              closed_until => 'integer|null', paused => 'object|null',
              draining => 'object|null' },
    max_running => 'integer',
    counts => { map { $_ => 'integer' }
                qw(pending retry running dead done webhooks_queued
                   webhooks_invalid audit_outbox audit_rejected
                   commands_queued) },
    eta => { queue_done_in_ms => 'integer|null', exact => 'boolean',
             blocked => 'string|null', basis => 'string' },
    running => [\%running],
    pending => [\%pending],
    dead => [\%dead],
    recent => [\%recent],
    webhooks => { queued => 'integer', invalid => 'integer',
                  last_at => 'integer|null', last_age_ms => 'integer|null' },
    workers => [{ id => 'string', alive => 'boolean',
                  info => 'object|null' }],
    agents => 'object',
    metrics => 'object',
    alerts => [{ level => 'string', code => 'string', message => 'string' }],
);


sub type_of {
    my ($v) = @_;

    return 'null' unless defined $v;
    return 'boolean' if JSON::PP::is_bool($v);
    return 'object' if ref $v eq 'HASH';
    return 'array' if ref $v eq 'ARRAY';

    my $flags = B::svref_2object(\$v)->FLAGS;

    return 'string' if $flags & B::SVp_POK;
    return 'integer' if $flags & B::SVp_IOK;
    return 'number';
}


# The places where $v differs from $schema: missing or extra fields, wrong
# types.  A list ([$schema]) checks every element.
sub shape_errors {
    my ($v, $schema, $path) = @_;
    my @err;

    $path = '' unless defined $path;

    if (ref $schema eq 'HASH') {
        return ("$path: " . type_of($v) . ", want object")
            unless ref $v eq 'HASH';

        for my $k (sort keys %$schema) {
            if (!exists $v->{$k}) {
                push @err, "$path.$k: missing";
                next;
            }
            push @err, shape_errors($v->{$k}, $schema->{$k}, "$path.$k");
        }

        push @err, map { "$path.$_: unexpected" }
                   grep { !exists $schema->{$_} } sort keys %$v;

        return @err;
    }

    if (ref $schema eq 'ARRAY') {
        return ("$path: " . type_of($v) . ", want array")
            unless ref $v eq 'ARRAY';

        for my $i (0 .. $#$v) {
            push @err, shape_errors($v->[$i], $schema->[0], "$path\[$i]");
        }

        return @err;
    }

    my $t = type_of($v);

    return () if grep { $_ eq $t } split /\|/, $schema;

    return ("$path: $t, want $schema");
}


# Decodes a status body and checks its shape; returns the data.
sub status_ok {
    my ($body, $name) = @_;

    my $s = eval { JSON::PP->new->decode($body) };

    Test::More::ok(defined $s, "$name - the body is JSON")
        or return undef;

    my @err = shape_errors($s, \%Status, '');

    Test::More::is(join("\n", @err), '',
                   "$name - exact fields and types");

    return $s;
}


1;
