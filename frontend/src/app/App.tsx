import { useEffect, useMemo, useState } from 'react';
import { Api } from '../features/api/client';
import { Session, browserStore } from '../features/auth/session';
import { SignIn } from '../features/auth/SignIn';
import { Upload } from '../features/upload/Upload';
import { Viewer } from '../features/viewer/Viewer';
import { setTokenSource } from '../features/viewer/cornerstone';
import { Worklist } from '../features/worklist/Worklist';
import { parseRoute } from './route';

export function App() {
  const session = useMemo(() => new Session(browserStore()), []);
  const api = useMemo(() => new Api(session), [session]);
  const [signedIn, setSignedIn] = useState(session.signedIn);
  const [message, setMessage] = useState<string | null>(null);
  const [route, setRoute] = useState(() => parseRoute(window.location.hash));

  useEffect(() => {
    setTokenSource(() => session.accessToken());
    const off = session.onEnd((reason) => {
      setMessage(reason);
      setSignedIn(false);
    });
    const onHash = () => setRoute(parseRoute(window.location.hash));
    window.addEventListener('hashchange', onHash);
    return () => {
      off();
      window.removeEventListener('hashchange', onHash);
    };
  }, [session]);

  if (!signedIn)
    return <SignIn session={session} message={message} onSignedIn={() => (setMessage(null), setSignedIn(true))} />;

  return (
    <div className="app">
      <header>
        <a href="#/" className="brand">Glioscope</a>
        <nav>
          <a href="#/">Worklist</a>
          <a href="#/upload">Upload</a>
        </nav>
        <span className="spacer" />
        <span className="muted small">Research use only</span>
        <button onClick={() => session.signOut(null)}>Sign out</button>
      </header>
      <main>
        {route.name === 'worklist' && <Worklist api={api} />}
        {route.name === 'upload' && <Upload api={api} />}
        {route.name === 'study' && <Viewer key={route.uid} api={api} studyUid={route.uid} />}
      </main>
    </div>
  );
}
