// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";
import {ERC20Burnable} from "@openzeppelin/contracts/token/ERC20/extensions/ERC20Burnable.sol";

/// @title DDVal demo reward token
/// @notice A plain, fixed-supply OpenZeppelin ERC-20 for the demo. The reward pool accepts any
/// ERC-20 (a stablecoin, for instance); this token only exists so that the embedded demo has one.
/// The whole supply is minted once, to `holder`; nobody can mint afterwards.
contract DDValToken is ERC20, ERC20Burnable {
    constructor(address holder, uint256 supply) ERC20("DDVal Reward Token", "DDV") {
        _mint(holder, supply);
    }
}
