// Pseudo-random bytes from a seed (xorshift32, four bytes a step): the page builds its File from them,
// again after a reload, and the test, which reads this file as source, computes the same bytes in Node.
function seededBytes(seed, size) {
  const bytes = new Uint8Array(size);
  let state = seed >>> 0 || 1;
  for (let i = 0; i < size; i++) {
    if (i % 4 === 0) {
      state ^= state << 13;
      state ^= state >>> 17;
      state ^= state << 5;
      state >>>= 0;
    }
    bytes[i] = (state >>> ((i % 4) * 8)) & 0xff;
  }
  return bytes;
}
