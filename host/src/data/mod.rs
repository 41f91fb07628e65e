//! Data: the CREMA-D layout, the official audio and image pipelines, synthetic datasets,
//! background loading.
