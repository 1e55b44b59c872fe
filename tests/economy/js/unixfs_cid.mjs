// Reference: the IPFS project's JS UnixFS importer (ipfs-unixfs-importer), configured like Kubo:
// fixed-size chunks, balanced layout, CIDv0 with dag-pb leaves ("v0") or CIDv1 with raw leaves ("v1").
// stdin: JSON {chunk, links, files: [path, ...]}; stdout: JSON [{v0, v1}, ...] in file order.
import { readFileSync } from 'node:fs';
import { importer } from 'ipfs-unixfs-importer';
import { fixedSize } from 'ipfs-unixfs-importer/chunker';
import { balanced } from 'ipfs-unixfs-importer/layout';
import { MemoryBlockstore } from 'blockstore-core/memory';

let input = '';
process.stdin.setEncoding('utf8');
process.stdin.on('data', (d) => { input += d; });
process.stdin.on('end', async () => {
  const { chunk, links, files } = JSON.parse(input);
  const out = [];
  for (const file of files) {
    const content = readFileSync(file);
    const row = {};
    for (const [version, rawLeaves] of [[0, false], [1, true]]) {
      const opts = {
        cidVersion: version,
        rawLeaves,
        chunker: fixedSize({ chunkSize: chunk }),
        layout: balanced({ maxChildrenPerNode: links }),
      };
      for await (const entry of importer([{ content }], new MemoryBlockstore(), opts)) row['v' + version] = entry.cid.toString();
    }
    out.push(row);
  }
  process.stdout.write(JSON.stringify(out));
});
