#!/usr/bin/env node
// The xlb command: runs the TypeScript sources through tsx, so that a checkout
// works without a separate build step for the control plane.
import { register } from 'tsx/esm/api';
register();
await import('../src/cli/main.ts');
