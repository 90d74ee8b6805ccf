import { StrictMode } from 'react';
import { createRoot } from 'react-dom/client';
import { App } from './app/App';
import { initCornerstone } from './features/viewer/cornerstone';
import './styles.css';

// Once per page, before any viewer mounts (StrictMode double-runs effects, not this).
void initCornerstone();

createRoot(document.getElementById('root')!).render(
  <StrictMode>
    <App />
  </StrictMode>,
);
