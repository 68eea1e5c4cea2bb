// The codecs as QuickJS runs them: no TextEncoder/TextDecoder (the SDK's own UTF-8 paths).
import { checkVectors } from './vectors.js';

delete globalThis.TextEncoder;
delete globalThis.TextDecoder;
const codec = await import('../src/codec.js?no-text-codec');
checkVectors(codec, 'without TextEncoder');
