// vtk.js ships no type declarations for these filters.
declare module '@kitware/vtk.js/Filters/General/ImageMarchingCubes' {
  const vtkImageMarchingCubes: { newInstance(initial?: Record<string, unknown>): any }; // eslint-disable-line @typescript-eslint/no-explicit-any
  export default vtkImageMarchingCubes;
}
declare module '@kitware/vtk.js/Filters/General/WindowedSincPolyDataFilter' {
  const vtkWindowedSincPolyDataFilter: { newInstance(initial?: Record<string, unknown>): any }; // eslint-disable-line @typescript-eslint/no-explicit-any
  export default vtkWindowedSincPolyDataFilter;
}
