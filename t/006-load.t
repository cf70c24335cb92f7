# Volume: 1,000 distinct webhooks give 1,000 202s and exactly 1,000
# envelopes, in order; then 1,000 more sent 40 at a time, concurrently.

use Test::Nginx::Socket 'no_plan';
use t::PB;

our $N = 1000;

our $Config = <<'_EOC_';
    location = /hook {
        phantombuster_webhook;
        phantombuster_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT;
        phantombuster_secret s3cret;
        phantombuster_queue pbtest:load;
        access_log off;
    }
_EOC_

add_block_preprocessor(sub {
    my $block = shift;

    $block->set_value('config', $Config);
    $block->set_value('log_level', 'warn');
    $block->set_value('no_error_log', "[error]\n[alert]\n[crit]\n");
});

# the ids the 202s named, in request order
our @Ids;

add_response_body_check(sub {
    my ($block, $body, $req_idx) = @_;

    push @Ids, $body =~ /"id":"([0-9a-f]{32})"/ ? $1 : 'none';
});

no_shuffle();
run_tests();

__DATA__

=== TEST 1: 1,000 sequential webhooks, 1,000 envelopes in delivery order
--- init
@main::Ids = ();
t::PB::expect(len => $main::N, queue => 'pbtest:load', check => sub {
    my ($block, $body) = @_;
    # this check runs before the suite's own one has seen the last body
    my @ids = (@main::Ids, $body =~ /"id":"(\w+)"/ ? $1 : 'none');
    my @env = t::PB::envelopes('pbtest:load');
    Test::More::is(scalar @env, $main::N, 'exactly 1,000 envelopes');
    Test::More::ok(join(',', map { $_->{payload}{containerId} } @env)
                   eq join(',', 1 .. $main::N), 'FIFO: delivery order');
    my $bad = grep { $env[$_]{id} ne $ids[$_] } 0 .. $#env;
    Test::More::is($bad, 0, 'each envelope carries the id its 202 named');
});
--- request eval
[map { "POST /hook?secret=s3cret\n" . t::PB::payload(containerId => $_) }
     1 .. $main::N]
--- error_code eval
[(202) x $main::N]



=== TEST 2: 1,000 webhooks, 40 in flight at a time: all stored exactly once
--- init
my (@codes, @ids);
for (my $i = 1; $i <= $main::N; $i += 40) {
    my $last = $i + 39 > $main::N ? $main::N : $i + 39;
    for my $r (t::PB::concurrent('/hook?secret=s3cret',
                   [map { t::PB::payload(containerId => 5000 + $_) }
                        $i .. $last]))
    {
        push @codes, $r->[0];
        push @ids, $r->[1] =~ /"id":"(\w+)"/ ? $1 : 'none';
    }
}
$t::PB::Stash{codes} = \@codes;
$t::PB::Stash{ids} = \@ids;
t::PB::expect(len => $main::N + 1, queue => 'pbtest:load', check => sub {
    my @codes = @{ $t::PB::Stash{codes} };
    Test::More::is(scalar(grep { $_ == 202 } @codes), $main::N,
                   'every concurrent webhook got 202');
    my @env = t::PB::envelopes('pbtest:load');
    my %by_id = map { $_->{id} => $_->{payload}{containerId} } @env;
    my $i = 0;
    my $bad = 0;
    for my $id (@{ $t::PB::Stash{ids} }) {
        $i++;
        $bad++ unless defined $by_id{$id} && $by_id{$id} == 5000 + $i;
    }
    Test::More::is($bad, 0, 'each 202 matches its stored envelope');
    my %seen;
    my $dups = grep { $seen{$_->{payload}{containerId}}++ } @env;
    Test::More::is($dups, 0, 'no envelope stored twice');
});
--- request eval
"POST /hook?secret=s3cret\n" . t::PB::payload(containerId => 1)
--- error_code: 202
