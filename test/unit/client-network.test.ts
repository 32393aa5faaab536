import { describe, expect, it } from 'vitest';
import { clientNetwork } from '../../src/auth/client-network.js';

describe('clientNetwork', () => {
  it('counts an IPv4 address, also IPv4-mapped, as itself', () => {
    expect(clientNetwork('198.51.100.7')).toBe('198.51.100.7');
    expect(clientNetwork('::ffff:198.51.100.7')).toBe('198.51.100.7');
    expect(clientNetwork('::FFFF:198.51.100.7')).toBe('198.51.100.7');
  });

  it('counts every IPv6 address of one /64 as that /64, however the address is written', () => {
    const network = '2001:db8:1:2::/64';
    for (const ip of ['2001:db8:1:2::1', '2001:db8:1:2:ffff:ffff:ffff:ffff', '2001:0db8:0001:0002:0:0:0:9', '2001:DB8:1:2:a::', '2001:db8:1:2::192.0.2.1']) {
      expect(clientNetwork(ip), ip).toBe(network);
    }
  });

  it('tells different /64 networks apart, also where "::" falls inside the first four groups', () => {
    expect(clientNetwork('2001:db8:1:3::1')).toBe('2001:db8:1:3::/64');
    expect(clientNetwork('2001:db8::1')).toBe('2001:db8:0:0::/64');
    expect(clientNetwork('::1')).toBe('0:0:0:0::/64');
    expect(clientNetwork('fe80::1:2:3:4')).toBe('fe80:0:0:0::/64');
  });

  it('leaves what is not an IP address as it is', () => {
    expect(clientNetwork('unknown')).toBe('unknown');
  });
});
