import type { Segment } from './dicomSeg';
import { opacityOf } from './segmentStyle';

/** The segments of the overlay: each shown or hidden, and its fill opacity. */
export function SegmentList(props: {
  segments: Segment[];
  hidden: Set<number>;
  opacities: Record<number, number>;
  onToggle: (number: number) => void;
  onOpacity: (number: number, opacity: number) => void;
}) {
  const { segments, hidden, opacities } = props;
  return (
    <ul className="segments">
      {segments.map((s) => (
        <li key={s.number}>
          <label>
            <input
              type="checkbox"
              checked={!hidden.has(s.number)}
              onChange={() => props.onToggle(s.number)}
              data-segment={s.number}
              data-rgb={s.rgb.join(',')}
              aria-label={`Show ${s.label}`}
            />
            <span className="swatch" style={{ background: `rgb(${s.rgb.join(',')})` }} />
            {s.label}
          </label>
          <input
            type="range"
            className="opacity"
            min={0}
            max={1}
            step={0.05}
            value={opacityOf(opacities, s.number)}
            onChange={(e) => props.onOpacity(s.number, Number(e.target.value))}
            data-opacity-segment={s.number}
            aria-label={`Opacity of ${s.label}`}
            title={`Fill opacity ${Math.round(opacityOf(opacities, s.number) * 100)} %`}
          />
        </li>
      ))}
    </ul>
  );
}
