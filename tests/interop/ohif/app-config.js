/** OHIF Viewer v3 configuration for tests/interop/test_ohif.py: served as /app-config.js in place of
 * the one in @ohif/app's dist/. One data source, DICOMweb on the page's own origin (/dicom-web), which
 * the test's server forwards to the Glioscope gateway's /dicom-web with a service API key. */
const dicomwebRoot = `${window.location.origin}/dicom-web`;

window.config = {
  name: 'glioscope-interop',
  routerBasename: '/',
  extensions: [],
  modes: [],
  customizationService: {},
  showStudyList: true,
  maxNumberOfWebWorkers: 2,
  showWarningMessageForCrossOrigin: false,
  showCPUFallbackMessage: false,
  showLoadingIndicator: true,
  strictZSpacingForVolumeViewport: true,
  showErrorDetails: 'always',
  investigationalUseDialog: { option: 'never' },
  defaultDataSourceName: 'glioscope',
  dataSources: [
    {
      namespace: '@ohif/extension-default.dataSourcesModule.dicomweb',
      sourceName: 'glioscope',
      configuration: {
        friendlyName: 'Glioscope gateway (DICOMweb)',
        name: 'glioscope',
        qidoRoot: dicomwebRoot,
        wadoRoot: dicomwebRoot,
        wadoUriRoot: dicomwebRoot,
        qidoSupportsIncludeField: true,
        supportsReject: false,
        supportsStow: false,
        imageRendering: 'wadors',
        thumbnailRendering: 'wadors',
        enableStudyLazyLoad: true,
        supportsFuzzyMatching: false,
        supportsWildcard: true,
        staticWado: false,
        // No 'pdf' here: OHIF would then ask for the PDF's /rendered, which Orthanc answers 400
        // ("Parameter out of range") for an Encapsulated PDF; without it the document is read as bulk data.
        singlepart: 'bulkdata,video',
        omitQuotationForMultipartRequest: true,
        bulkDataURI: { enabled: true, relativeResolution: 'studies' },
      },
    },
  ],
};
