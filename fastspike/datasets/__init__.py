"""Neuromorphic datasets: file decoders, event-to-frame integration, transforms, dataset classes.

See docs/datasets.md.  The package mirrors SpikingJelly 2.0's ``spikingjelly.datasets`` (same module
names, classes, signatures and numbers: ``fastspike.datasets.cifar10_dvs.CIFAR10DVS`` etc.) and adds
``read_events`` (validated decoding of every supported file format), fast ``to_frames``, event
transforms and a few datasets SpikingJelly lacks (NCARS, MNISTDVS, SHD/SSC with integer-µs events).
"""
from . import (asl_dvs, base, bullying10k, cifar10_dvs, dvs128_gesture, dvs_lip, es_imagenet, formats, frames, hardvs,
               mnist_dvs, n_caltech101, n_cars, n_mnist, nav_gesture, shd, speechcommands, transform, transforms, utils)
from ._archives import MissingArchivesError, Resource, md5sum
from ._helpers import stratified_split
from .asl_dvs import ASLDVS
from .base import (EventBuilder, FrameCustomIntegrateBuilder, FrameFixedDurationBuilder, FrameFixedNumberBuilder,
                   NeuromorphicDatasetBuilder, NeuromorphicDatasetConfig, NeuromorphicDatasetFolder)
from .cifar10_dvs import CIFAR10DVS, CIFAR10DVS_CLASS_NAMES, CIFAR10DVSTEBNSplit
from .bullying10k import BULLYING10K_CATEGORY_LABEL, Bullying10kClassification
from .dvs128_gesture import DVS128Gesture
from .dvs_lip import DVSLip
from .es_imagenet import ESImageNet
from .hardvs import HARDVS
from .formats import (EVENT_DTYPE, FORMATS, EventFileError, check_range, detect_format, make_events, read_events,
                      read_shd)
from .frames import frame_index, pad_sequence_collate, padded_sequence_mask, split_indices, to_frames
from .mnist_dvs import MNISTDVS
from .n_caltech101 import NCaltech101
from .n_cars import NCARS
from .n_mnist import NMNIST
from .nav_gesture import NAVGesture, NAVGestureSit, NAVGestureWalk
from .shd import (SHD, SHD_N_CLASSES, SSC, SSC_N_CLASSES, SHDFrameCustomIntegrateBuilder, SHDFrameFixedDurationBuilder,
                  SHDFrameFixedNumberBuilder, SpikingHeidelbergDigits, SpikingSpeechCommands)
from .speechcommands import SPEECHCOMMANDS, SpeechCommands
from .transform import RandomTemporalDelete, random_temporal_delete
from .utils import (cal_fixed_frames_number_segment_index, create_same_directory_structure, create_sub_dataset,
                    integrate_events_by_fixed_duration, integrate_events_by_fixed_frames_number,
                    integrate_events_file_to_frames_file_by_fixed_duration,
                    integrate_events_file_to_frames_file_by_fixed_frames_number, integrate_events_segment_to_frame,
                    load_aedat_v3, load_ATIS_bin, load_npz_frames, np_savez, play_frame, save_as_pic,
                    split_to_train_test_set)

#: fastspike's earlier name of the base class
NeuromorphicDataset = NeuromorphicDatasetFolder
