// Reference: @openzeppelin/merkle-tree's StandardMerkleTree for [uint256, address, uint256] leaves.
// stdin: JSON list of trees, each [["index", account, "amount"], ...];
// stdout: JSON list of {root, proofs: [[hex, ...], ...]} (proofs in input order).
import { StandardMerkleTree } from '@openzeppelin/merkle-tree';

let input = '';
process.stdin.setEncoding('utf8');
process.stdin.on('data', (d) => { input += d; });
process.stdin.on('end', () => {
  const out = JSON.parse(input).map((values) => {
    const tree = StandardMerkleTree.of(values, ['uint256', 'address', 'uint256']);
    return { root: tree.root, proofs: values.map((_, i) => tree.getProof(i)) };
  });
  process.stdout.write(JSON.stringify(out));
});
