"""python -m flashgdn [--cmake-prefix | --include | --info]"""

import argparse

import flashgdn


def main():
    ap = argparse.ArgumentParser(prog="python -m flashgdn")
    ap.add_argument("--cmake-prefix", action="store_true", help="print the prefix for find_package(flashgdn)")
    ap.add_argument("--include", action="store_true", help="print the directory of flashgdn/flashgdn.h")
    ap.add_argument("--info", action="store_true", help="print the build and device status")
    a = ap.parse_args()
    if a.cmake_prefix:
        print(flashgdn.cmake_prefix_path())
    elif a.include:
        print(flashgdn.include_dir())
    else:
        from flashgdn import _native
        import torch
        print(f"flashgdn {flashgdn.__version__}: {_native.ext().build_info()}")
        if torch.cuda.is_available():
            for i in range(torch.cuda.device_count()):
                status, msg = _native.ext().check_device(i)
                print(f"cuda:{i} {torch.cuda.get_device_name(i)}: {'ok' if status == 0 else msg}")
        else:
            print("no CUDA device visible to torch")


if __name__ == "__main__":
    main()
