// Hash routes: the gateway serves dist/ as static files, so deep links live after the '#'.
export type Route = { name: 'worklist' } | { name: 'upload' } | { name: 'study'; uid: string };

export function parseRoute(hash: string): Route {
  const path = hash.replace(/^#/, '');
  const study = /^\/studies\/([0-9.]+)\/?$/.exec(path);
  if (study) return { name: 'study', uid: study[1] };
  if (path === '/upload') return { name: 'upload' };
  return { name: 'worklist' };
}
