#!/usr/bin/perl
# Net::SIP::Simple listening as a user agent, as its documentation shows it: OPTIONS are answered
# by the library itself. Only the listening address is chosen here.
use strict;
use warnings;
use Net::SIP;

my ($addr, $port) = @ARGV;
my $ua = Net::SIP::Simple->new(leg => Net::SIP::Leg->new(addr => $addr, port => $port),
                               from => "sip:lab\@$addr");
$ua->listen;
$ua->loop;
