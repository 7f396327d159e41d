# ZKYNET_CUDA = AUTO (default: on when nvcc and cuBLAS are found), ON (fail without them) or OFF.
# Sets ZKYNET_HAVE_CUDA. A CUDA build still runs every CPU test on a machine without a GPU or a
# driver: whether a device answers is asked at run time (zkynet::cuda::is_available()).
set(ZKYNET_CUDA AUTO CACHE STRING "Build the CUDA kernels: AUTO, ON or OFF")
set_property(CACHE ZKYNET_CUDA PROPERTY STRINGS AUTO ON OFF)
set(ZKYNET_HAVE_CUDA OFF)
set(ZKYNET_HAVE_CUDNN OFF)

if(NOT ZKYNET_CUDA STREQUAL "OFF")
  if(NOT CMAKE_CUDA_COMPILER AND NOT DEFINED ENV{CUDACXX} AND EXISTS /usr/local/cuda/bin/nvcc)
    set(CMAKE_CUDA_COMPILER /usr/local/cuda/bin/nvcc)
  endif()
  include(CheckLanguage)
  check_language(CUDA)
  if(CMAKE_CUDA_COMPILER)
    # Explicit: "native" needs a GPU at configure time. sm_90 (H100/H200) as machine code, and
    # compute_75 PTX that the driver compiles for any other GPU nvcc 13 supports.
    if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES)
      set(CMAKE_CUDA_ARCHITECTURES "90-real;75-virtual")
    endif()
    enable_language(CUDA)
    # NOTE: CMake 3.25 does not know nvcc 13's C++20 flag ("requires the language dialect
    # CUDA20"): tell it.
    set(CMAKE_CUDA20_STANDARD_COMPILE_OPTION "-std=c++20")
    set(CMAKE_CUDA20_EXTENSION_COMPILE_OPTION "-std=c++20")
    set(CMAKE_CUDA_STANDARD 20)
    set(CMAKE_CUDA_STANDARD_REQUIRED ON)
    set(CMAKE_CUDA_EXTENSIONS OFF)
    if(ZKYNET_CCACHE AND NOT CMAKE_CUDA_COMPILER_LAUNCHER)
      set(CMAKE_CUDA_COMPILER_LAUNCHER ${ZKYNET_CCACHE})
    endif()
    find_package(CUDAToolkit)
    if(CUDAToolkit_FOUND AND TARGET CUDA::cublas AND TARGET CUDA::cudart_static)
      set(ZKYNET_HAVE_CUDA ON)
    endif()
    # cuDNN (optional: conv2d on CUDA needs it, and throws DeviceError without it): its header
    # and library next to the toolkit's, or where CUDNN_ROOT points.
    if(ZKYNET_HAVE_CUDA)
      find_path(ZKYNET_CUDNN_INCLUDE_DIR cudnn.h HINTS ${CUDNN_ROOT} ${CUDAToolkit_INCLUDE_DIRS} PATH_SUFFIXES include)
      find_library(ZKYNET_CUDNN_LIBRARY cudnn HINTS ${CUDNN_ROOT} ${CUDAToolkit_LIBRARY_DIR} PATH_SUFFIXES lib64 lib)
      if(ZKYNET_CUDNN_INCLUDE_DIR AND ZKYNET_CUDNN_LIBRARY)
        set(ZKYNET_HAVE_CUDNN ON)
        if(NOT TARGET zkynet_cudnn)
          add_library(zkynet_cudnn INTERFACE IMPORTED)
          set_target_properties(zkynet_cudnn PROPERTIES INTERFACE_INCLUDE_DIRECTORIES "${ZKYNET_CUDNN_INCLUDE_DIR}"
                                                        INTERFACE_LINK_LIBRARIES "${ZKYNET_CUDNN_LIBRARY}")
        endif()
      endif()
    endif()
  endif()
  if(ZKYNET_CUDA STREQUAL "ON" AND NOT ZKYNET_HAVE_CUDA)
    message(FATAL_ERROR "ZKYNET_CUDA=ON, but nvcc or cuBLAS was not found (set CUDAToolkit_ROOT or CMAKE_CUDA_COMPILER)")
  endif()
endif()
message(STATUS "zkynet: CUDA kernels: ${ZKYNET_HAVE_CUDA} (ZKYNET_CUDA=${ZKYNET_CUDA})")
message(STATUS "zkynet: cuDNN: ${ZKYNET_HAVE_CUDNN} ${ZKYNET_CUDNN_LIBRARY}")
