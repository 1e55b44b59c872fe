// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";

/// @title Per-recipient transfer loop (baseline for the gas comparison only)
/// @notice The push-payment design of the original code, made safe enough to measure: the owner
/// pays a list of recipients from the contract's balance in one transaction per batch. It exists
/// so that notebook 05 can measure what a push payout costs next to Merkle claims; the ddval
/// reward flow never uses it (one reverting recipient blocks a whole batch, the payer funds all
/// the gas, and the owner decides who gets what).
contract TransferLoopPayout is Ownable {
    using SafeERC20 for IERC20;

    error LengthMismatch();

    IERC20 public immutable token;

    constructor(address initialOwner, IERC20 token_) Ownable(initialOwner) {
        token = token_;
    }

    function payAll(address[] calldata to, uint256[] calldata amounts) external onlyOwner {
        if (to.length != amounts.length) revert LengthMismatch();
        for (uint256 i = 0; i < to.length; ++i) {
            token.safeTransfer(to[i], amounts[i]);
        }
    }
}
