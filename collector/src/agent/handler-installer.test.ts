import t from 'tap';
import { handlerWrapperScript } from './handler-installer.ts';

t.test('the wrapper runs Node by absolute path with the config beside it', async (t) => {
  const s = handlerWrapperScript("/opt/node's/bin/node", '/opt/pm/handler.ts');
  t.match(s, /^#!\/bin\/bash\n/);
  t.match(
    s,
    /exec '\/opt\/node'\\''s\/bin\/node' .* '\/opt\/pm\/handler.ts' --config "\$here\/podmortem-handler.json" "\$@"/,
  );
});
