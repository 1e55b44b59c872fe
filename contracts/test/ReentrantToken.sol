// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";

/// @title Malicious ERC-20 for tests: re-enters a target during transfers
/// @notice When armed, every transfer *out of* `target` first calls `target` with `payload`
/// (like an ERC-777/ERC-1363 hook controlled by an attacker). With `bubble` set, a failing
/// re-entrant call reverts the whole transfer with the callee's error; otherwise the failure is
/// recorded in `lastReentryError` and the transfer goes on.
contract ReentrantToken is ERC20 {
    address public target;
    bytes public payload;
    bool public bubble;
    bool public reentered;
    bool public lastReentrySucceeded;
    bytes public lastReentryError;
    bool private _inHook;

    constructor(address holder, uint256 supply) ERC20("Reentrant Token", "REENT") {
        _mint(holder, supply);
    }

    function arm(address target_, bytes calldata payload_, bool bubble_) external {
        target = target_;
        payload = payload_;
        bubble = bubble_;
    }

    function _update(address from, address to, uint256 value) internal override {
        if (target != address(0) && from == target && !_inHook) {
            _inHook = true;
            reentered = true;
            (bool ok, bytes memory ret) = target.call(payload);
            lastReentrySucceeded = ok;
            if (!ok) {
                lastReentryError = ret;
                if (bubble) {
                    assembly ("memory-safe") {
                        revert(add(ret, 0x20), mload(ret))
                    }
                }
            }
            _inHook = false;
        }
        super._update(from, to, value);
    }
}
