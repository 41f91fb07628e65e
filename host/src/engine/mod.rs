//! The CPU training engine: tensors, layers with hand-written backward passes, the
//! audio-visual ResNet-18 model, parameter arenas, optimisers.
