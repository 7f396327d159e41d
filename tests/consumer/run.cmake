# Installs zkynet into a scratch prefix, then builds and runs a tiny project that finds it
# with find_package(zkynet): proof that the exported package works for users. With PYTHON set
# (a build with the bindings), the Python package that cmake --install put into the prefix's
# site-packages is imported from there too.
file(REMOVE_RECURSE "${WORK_DIR}")
execute_process(COMMAND ${CMAKE_COMMAND} --install "${BINARY_DIR}" --prefix "${WORK_DIR}/prefix"
                RESULT_VARIABLE rc OUTPUT_QUIET)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "installing zkynet failed")
endif()
execute_process(COMMAND ${CMAKE_COMMAND} -S "${SOURCE_DIR}/tests/consumer/project" -B "${WORK_DIR}/build"
                        -G "${GENERATOR}" -DCMAKE_PREFIX_PATH=${WORK_DIR}/prefix
                        -DZKYNET_EXPECT_DISTRIBUTED=${DISTRIBUTED}
                RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "configuring the consumer project failed")
endif()
execute_process(COMMAND ${CMAKE_COMMAND} --build "${WORK_DIR}/build" RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "building the consumer project failed")
endif()
foreach(program consumer consumer_nn)
  execute_process(COMMAND "${WORK_DIR}/build/${program}" RESULT_VARIABLE rc OUTPUT_VARIABLE out)
  message(STATUS "${program} printed: ${out}")
  if(NOT rc EQUAL 0 OR NOT out MATCHES "36 9 33")
    message(FATAL_ERROR "the consumer program ${program} failed (exit ${rc})")
  endif()
endforeach()
if(DISTRIBUTED)
  execute_process(COMMAND "${WORK_DIR}/build/consumer_distributed" RESULT_VARIABLE rc OUTPUT_VARIABLE out)
  message(STATUS "consumer_distributed printed: ${out}")
  if(NOT rc EQUAL 0 OR NOT out MATCHES "linked")
    message(FATAL_ERROR "the consumer program consumer_distributed failed (exit ${rc})")
  endif()
endif()

if(PYTHON)
  file(GLOB_RECURSE inits "${WORK_DIR}/prefix/__init__.py")
  list(FILTER inits INCLUDE REGEX "/zkynet/__init__\\.py$")
  list(LENGTH inits found)
  if(NOT found EQUAL 1)
    message(FATAL_ERROR "cmake --install put ${found} zkynet packages into the prefix: ${inits}")
  endif()
  get_filename_component(package "${inits}" DIRECTORY)
  get_filename_component(site "${package}" DIRECTORY)
  execute_process(COMMAND ${CMAKE_COMMAND} -E env PYTHONPATH=${site}
                          ${PYTHON} -c "import zkynet; from zkynet import nn; assert zkynet.__file__.startswith('${site}'), zkynet.__file__; print(nn.Linear(3, 2)(zkynet.ones(4, 3)).value.shape)"
                  WORKING_DIRECTORY "${WORK_DIR}" RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  message(STATUS "the installed Python package (${site}) printed: ${out}")
  if(NOT rc EQUAL 0 OR NOT out MATCHES "\\(4, 2\\)")
    message(FATAL_ERROR "importing the installed Python package failed (exit ${rc}): ${err}")
  endif()
endif()
